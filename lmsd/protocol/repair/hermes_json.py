"""Hermes/Qwen JSON in content: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
(LM Studio 0.4.18, #2115)."""

from __future__ import annotations

from .base import Result, Tools, wrapped_json

NAME = "hermes_json"
OPENERS = ("<tool_call>",)

_CLOSE = "</tool_call>"


def parse(text: str, final: bool, tools: Tools) -> Result:
    return wrapped_json(text, final, tools, OPENERS[0], _CLOSE)
