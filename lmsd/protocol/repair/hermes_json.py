"""Hermes/Qwen JSON in content: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
(LM Studio 0.4.18, #2115)."""

from __future__ import annotations

from .base import Match, Result, Tools, json_call, loads, skip_ws, wait

NAME = "hermes_json"
OPENERS = ("<tool_call>",)

_CLOSE = "</tool_call>"


def parse(text: str, final: bool, tools: Tools) -> Result:
    i = skip_ws(text, len("<tool_call>"))
    if i == len(text):
        return wait(final)
    if text[i] != "{":
        return None
    close = text.find(_CLOSE, i)
    if close < 0:
        return wait(final)
    call = json_call(loads(text[i:close]), tools)
    return None if call is None else Match(close + len(_CLOSE), (call,))
