"""The emulator's prompt: its deterministic tokenizer, and the text a context renders
to (what ``input_tokens`` and the prefix cache count)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

Item = dict[str, Any]

_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """The emulator's deterministic tokenizer: words and single punctuation marks."""
    return _TOKEN.findall(text)


def _part_text(part: Any) -> str:
    if not isinstance(part, dict):
        return str(part)
    if part.get("type") == "input_image":
        return "<image>"
    return str(part.get("text", ""))


def render_item(item: Item) -> str:
    """Render one context item (input or output form) as prompt text."""
    kind = item.get("type", "message")
    if kind == "message":
        content = item.get("content", "")
        text = content if isinstance(content, str) else " ".join(map(_part_text, content))
        return f"<|{item.get('role')}|>\n{text}\n"
    if kind == "function_call":
        return f"<|call|>{item.get('call_id')} {item.get('name')} {item.get('arguments')}\n"
    if kind == "function_call_output":
        return f"<|tool_result|>{item.get('call_id')}\n{item.get('output')}\n"
    if kind == "reasoning":
        parts = (item.get("content") or []) + (item.get("summary") or [])
        return "<|think|>\n" + " ".join(map(_part_text, parts)) + "\n"
    return json.dumps(item, sort_keys=True) + "\n"


def render_context(
    items: Iterable[Item], instructions: str | None = None, tools: Sequence[Any] = ()
) -> str:
    """Render instructions, tools and items the way the prompt is laid out for the model."""
    head = f"<|system|>\n{instructions}\n" if instructions else ""
    if tools:
        head += "<|tools|>\n" + json.dumps(list(tools), sort_keys=True) + "\n"
    return head + "".join(render_item(item) for item in items)


def count_tokens(
    items: Iterable[Item] = (), *, instructions: str | None = None, tools: Sequence[Any] = ()
) -> int:
    """Number of emulator tokens in a context (what `input_tokens` counts)."""
    return len(tokenize(render_context(items, instructions, tools)))
