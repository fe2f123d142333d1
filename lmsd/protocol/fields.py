"""Reading a client's JSON body field by field: every front's 400 names the field, the
type it wanted and the type it got, in the same words."""

from __future__ import annotations

from typing import Any

from .failures import invalid


def type_name(value: Any) -> str:
    """A JSON type's name (``object``, ``array``...), as a client reads its own body."""
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "null" if value is None else type(value).__name__)


def expect(value: Any, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    """``value`` if it is a ``kind`` (a bool is no number), else a 400 naming ``where``."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise invalid(f"{where}: expected {what}, got {type_name(value)}")
    return value


def number(body: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    """An optional number within ``[lo, hi]``."""
    value = body.get(key)
    if value is None:
        return None
    expect(value, (int, float), key, "a number")
    if not lo <= value <= hi:
        raise invalid(f"{key}: must be between {lo} and {hi}, got {value}")
    return float(value)


def stop_strings(value: list[Any], key: str, limit: int) -> list[str]:
    """Stop sequences: at most ``limit`` non-empty strings (``value`` already a list)."""
    if len(value) > limit:
        raise invalid(f"{key}: at most {limit} sequences are allowed")
    for i, seq in enumerate(value):
        expect(seq, str, f"{key}.{i}", "a string")
        if not seq:
            raise invalid(f"{key}.{i}: must not be empty")
    return value
