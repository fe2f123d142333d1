"""What every format parser returns, and the helpers they share.

A parser sees the text from its opener on and answers :data:`PENDING` (more text could
change the answer), ``None`` (not a call: the text stays text) or a :class:`Match`. Once it
answers ``None`` or a match for some text it must answer the same for any longer text:
that is what makes the filter's output the same however the upstream chunked it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from ..pivot import FunctionTool
from .schema import conform

Call = tuple[str, dict[str, Any]]
Tools = dict[str, FunctionTool]


class _Pending:
    __slots__ = ()

    def __repr__(self) -> str:
        return "PENDING"


PENDING: Final = _Pending()


@dataclass(frozen=True, slots=True)
class Match:
    end: int  # where the call's markup ends, from the opener
    calls: tuple[Call, ...]


Result = Match | _Pending | None

#: The longest a tool name may run before a parser gives up waiting for its end.
NAME_LIMIT = 200


def wait(final: bool) -> Result:
    """Incomplete markup: wait for more, or (at the end of the text) it is not a call."""
    return None if final else PENDING


def skip_ws(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i].isspace():
        i += 1
    return i


def trim_newline(value: str) -> str:
    """Drop the one newline a chat template puts on each side of an XML value."""
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value


def optional_closer(text: str, end: int, closer: str, final: bool) -> int | None:
    """Where a call ends if a stray ``closer`` may follow it (after blanks); ``None`` while
    the text so far could still be that closer."""
    j = skip_ws(text, end)
    tail = text[j:]
    if tail.startswith(closer):
        return j + len(closer)
    if not final and closer.startswith(tail):
        return None
    return end


def json_call(obj: object, tools: Tools, *, strict: bool = False) -> Call | None:
    """``{"name": ..., "arguments": {...}}`` (or ``parameters``) as a declared call.

    ``strict`` (a bare reply) asks for the arguments key and no keys a call never has.
    """
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    key = "arguments" if "arguments" in obj else "parameters"
    if strict and (key not in obj or not set(obj) <= {"name", key, "id", "type"}):
        return None
    args = obj.get(key, {})
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            return None
    return conform(tools, obj["name"], args)


def loads(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None


def wrapped_json(text: str, final: bool, tools: Tools, opener: str, closer: str) -> Result:
    """A JSON call between ``opener`` and ``closer`` (Hermes' ``<tool_call>``, LM Studio's
    ``[TOOL_REQUEST]``): wait for the closer, then take the object if it is a call."""
    i = skip_ws(text, len(opener))
    if i == len(text):
        return wait(final)
    if text[i] != "{":
        return None
    close = text.find(closer, i)
    if close < 0:
        return wait(final)
    call = json_call(loads(text[i:close]), tools)
    return None if call is None else Match(close + len(closer), (call,))
