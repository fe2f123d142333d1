"""``[TOOL_REQUEST]{"name": ..., "arguments": {...}}[END_TOOL_REQUEST]``."""

from __future__ import annotations

from .base import Match, Result, Tools, json_call, loads, skip_ws, wait

NAME = "tool_request"
OPENERS = ("[TOOL_REQUEST]",)

_CLOSE = "[END_TOOL_REQUEST]"


def parse(text: str, final: bool, tools: Tools) -> Result:
    i = skip_ws(text, len("[TOOL_REQUEST]"))
    if i == len(text):
        return wait(final)
    if text[i] != "{":
        return None
    close = text.find(_CLOSE, i)
    if close < 0:
        return wait(final)
    call = json_call(loads(text[i:close]), tools)
    return None if call is None else Match(close + len(_CLOSE), (call,))
