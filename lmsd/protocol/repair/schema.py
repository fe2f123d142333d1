"""Arguments checked against the declared tool: the name, the required keys, the types.

XML-ish formats carry every value as a string; a tool's schema says what it should be.
A value that does not convert stays a string: the client's own validation then tells the
model, which beats showing it raw markup.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ..pivot import FunctionTool

_INTEGER = re.compile(r"[-+]?\d+")


def conform(tools: dict[str, FunctionTool], name: str,
            args: object) -> tuple[str, dict[str, Any]] | None:
    """The call with its values converted, or ``None`` when it is not a real call."""
    tool = tools.get(name)
    if tool is None or not isinstance(args, dict):
        return None
    params = tool.parameters if isinstance(tool.parameters, dict) else {}
    props = params.get("properties")
    props = props if isinstance(props, dict) else {}
    out = {k: coerce(v, props.get(k)) for k, v in args.items()}
    required = params.get("required")
    if isinstance(required, list) and any(r not in out for r in required):
        return None
    return name, out


def coerce(value: object, prop: object) -> object:
    """A string value as the schema's type asks (the first type that fits)."""
    if not isinstance(value, str) or not isinstance(prop, dict):
        return value
    kind = prop.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if "string" in kinds or kind is None:
        return value
    for k in kinds:
        converted = _convert(value.strip(), k)
        if converted is not _NO:
            return converted
    return value


_NO = object()


def _convert(text: str, kind: object) -> object:
    if kind == "integer":
        return int(text) if _INTEGER.fullmatch(text) else _NO
    if kind == "number":
        if _INTEGER.fullmatch(text):
            return int(text)
        try:
            number = float(text)
        except ValueError:
            return _NO
        return number if math.isfinite(number) else _NO
    if kind == "boolean":
        return {"true": True, "false": False}.get(text.lower(), _NO)
    if kind == "null":
        return None if text.lower() in ("null", "none", "") else _NO
    if kind in ("object", "array"):
        try:
            parsed = json.loads(text)
        except ValueError:
            return _NO
        wanted = dict if kind == "object" else list
        return parsed if isinstance(parsed, wanted) else _NO
    return _NO
