"""Lone surrogates: JSON can spell them (``"\\ud800"``), Python keeps them in a ``str``,
and nothing can encode them (UTF-8 going upstream, a hash, the store, the log). A body
carrying one is refused when it is read, naming where."""

from __future__ import annotations

import re
from typing import Any

_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # how a surrogate is spelled in JSON text
_SURROGATE = re.compile("[\ud800-\udfff]")


def may_hold_surrogate(raw: bytes) -> bool:
    """Cheap: False when the body cannot hold one (strict UTF-8, no ``\\uD8..`` escape)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return True  # json decodes bytes with surrogatepass: encoded surrogates get through
    return _ESCAPE.search(text) is not None


def lone_surrogate(value: Any) -> tuple[str, str] | None:
    """Where the first lone surrogate in a parsed JSON value is (``messages.0.content``,
    ``body`` for the top level) and which (``\\ud800``), or None. Iterative: the value
    may be nested deeply."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if found := _SURROGATE.search(item):
                return where or "body", _escaped(found.group())
        elif isinstance(item, dict):
            for key, sub in item.items():
                path = f"{where}.{key}" if where else str(key)
                if found := _SURROGATE.search(key):
                    return f"{where or 'body'} (a key)", _escaped(found.group())
                stack.append((sub, path))
        elif isinstance(item, list):
            stack.extend((sub, f"{where}.{i}" if where else str(i))
                         for i, sub in enumerate(item))
    return None


def _escaped(text: str) -> str:
    """Printable and encodable: surrogates (and anything else odd) as ``\\uXXXX``."""
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


def describe(where: str, char: str) -> str:
    """The 400's words: the field (the client's own keys, escaped, cut short) and the
    surrogate."""
    shown = _escaped(where)
    shown = shown if len(shown) <= 200 else shown[:200] + "..."
    return (f"{shown}: a lone surrogate ({char}) is not valid Unicode; send UTF-8 text "
            f"(surrogates only in pairs)")
