"""``[TOOL_REQUEST]{"name": ..., "arguments": {...}}[END_TOOL_REQUEST]``."""

from __future__ import annotations

from .base import Result, Tools, wrapped_json

NAME = "tool_request"
OPENERS = ("[TOOL_REQUEST]",)

_CLOSE = "[END_TOOL_REQUEST]"


def parse(text: str, final: bool, tools: Tools) -> Result:
    return wrapped_json(text, final, tools, OPENERS[0], _CLOSE)
