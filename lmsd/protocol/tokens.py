"""Token estimation, and usage in Anthropic's shape.

The estimate is deliberately simple (characters / 3.5 plus small per-item overheads): it
runs on every request, so it must cost microseconds, and it errs a little high so that
Claude Code compacts before LM Studio overflows rather than after.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from math import ceil
from typing import Any

from .chain import same_json
from .pivot import Conversation, FunctionCall, FunctionCallOutput, Image, Message, Usage

CHARS_PER_TOKEN = 3.5
IMAGE_TOKENS = 1600  # Anthropic's own ceiling for one image
MESSAGE_OVERHEAD = 4
TOOL_OVERHEAD = 8


def text_tokens(text: str) -> int:
    return ceil(len(text) / CHARS_PER_TOKEN)


#: An escaped backslash, or a ``\\uXXXX`` escape, in ``json.dumps``' ASCII output.
_ESCAPES = re.compile(r"\\\\|\\u([0-9a-f]{4})")


def json_chars(value: Any) -> int:
    """``len(json.dumps(value, ensure_ascii=False))``, in half the time: the ASCII dump
    (CPython's fast path) less what escaping added there alone (DEL and non-ASCII: 5
    characters a ``\\uXXXX``, one more for each astral character, two escapes for one).
    Requests are read with lone surrogates refused (``jsoncheck.py``): a high half is
    always the start of a pair."""
    text = json.dumps(value)
    if "\\u" not in text:
        return len(text)
    extra = 0
    for escape in _ESCAPES.finditer(text):
        if (hex4 := escape.group(1)) is not None and (code := int(hex4, 16)) >= 0x7F:
            extra += 6 if 0xD800 <= code < 0xDC00 else 5
    return len(text) - extra


def json_tokens(value: Any) -> int:
    """The estimate of ``value`` as JSON text."""
    return ceil(json_chars(value) / CHARS_PER_TOKEN)


class ToolsTokens:
    """The tools' part of the estimate for the last ``size`` distinct tool sets: an agent
    sends the same tens of KB of tool schemas every turn, and encoding them was nearly all
    of the estimate (0.31 of 0.32 ms for Claude Code's 79 KB request; found again in 0.1).
    Found by exact comparison of the parsed values (``chain.same_json``: the same JSON
    text), never by a hash: a hit is the figure computing it would give."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, tuple[Any, ...]], tuple[Any, int]] = \
            OrderedDict()

    def total(self, kind: str, names: tuple[Any, ...], tools: Any,
              compute: Callable[[], int]) -> int:
        """``compute()``, or what it gave for the same ``tools`` (of ``kind``, named
        ``names``) before."""
        key = (kind, names)
        kept = self._entries.get(key)
        if kept is not None and same_json(kept[0], tools):
            self._entries.move_to_end(key)
            return kept[1]
        total = compute()
        self._entries[key] = (tools, total)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return total


#: The daemon's: a few agents, each with one tool set at a time.
TOOLS = ToolsTokens()


def _anthropic_tools_tokens(tools: Sequence[Any]) -> int:
    return sum(TOOL_OVERHEAD + json_tokens(tool) for tool in tools)


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return text_tokens(content)
    total = 0
    for block in content or ():
        kind = block.get("type")
        if kind == "text":
            total += text_tokens(block.get("text", ""))
        elif kind == "image":
            total += IMAGE_TOKENS
        elif kind == "tool_use":
            total += TOOL_OVERHEAD + text_tokens(block.get("name", ""))
            total += json_tokens(block.get("input", {}))
        elif kind == "tool_result":
            total += TOOL_OVERHEAD + _content_tokens(block.get("content", ""))
        elif kind == "thinking":
            total += text_tokens(block.get("thinking", ""))
        elif kind == "document":
            source = block.get("source") or {}
            data = source.get("data") if source.get("type") == "text" else ""
            total += text_tokens(str(data or "")) + _content_tokens(source.get("content") or ())
        else:
            total += json_tokens(block)
    return total


def estimate_tokens(
    system: str | list[dict[str, Any]] | None,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
) -> int:
    """Estimate the prompt tokens of an Anthropic request: system, tools and messages."""
    total = _content_tokens(system) if system else 0
    if tools:
        names = tuple(n if isinstance(t, dict) and isinstance(n := t.get("name"), str)
                      else None for t in tools)
        total += TOOLS.total("anthropic", names, tools, lambda: _anthropic_tools_tokens(tools))
    for message in messages:
        total += MESSAGE_OVERHEAD + _content_tokens(message.get("content"))
    return total


def anthropic_usage(
    *, input_tokens: int, output_tokens: int = 0, cache_read: int = 0
) -> dict[str, Any]:
    """A usage object with every key Claude Code reads (it crashes on missing ones)."""
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cache_read,
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
        "service_tier": "standard",
        "speed": None,
    }


def context_usage(upstream: Usage | None, estimate: int) -> tuple[int, int]:
    """Return (uncached input tokens, cache-read tokens) for the whole context.

    LM Studio's ``input_tokens`` may count only the uncached part, with ``cached_tokens``
    stuck at 0 (lms#553), or only the new items of a chained request. Claude Code needs
    the size of the whole context to decide when to compact, so whenever the upstream's
    figure covers less than half of our estimate, the estimate stands in for it.
    """
    if upstream is None:
        return estimate, 0
    reported, cached = upstream.input_tokens, upstream.cached_tokens
    total = reported if reported >= cached else reported + cached
    if total * 2 < estimate:
        return max(estimate - cached, 0), min(cached, estimate)
    return total - cached, cached


def count_text(system: str, messages: list[dict[str, Any]],
               tools: list[dict[str, Any]] | None) -> str:
    """The text a tokenizer endpoint counts for ``count_tokens``: the system prompt, the
    tool definitions as JSON, and every message's text (a close stand-in for the
    rendered prompt, which only the server's template knows exactly)."""
    parts = [system] if system else []
    parts += [json.dumps(t, ensure_ascii=False) for t in tools or ()]
    for message in messages:
        parts.append(_message_text(message.get("content")))
    return "\n".join(p for p in parts if p)


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    pieces = []
    for block in content or ():
        kind = block.get("type")
        if kind == "text":
            pieces.append(block.get("text", ""))
        elif kind == "tool_use":
            pieces.append(json.dumps(block.get("input", {}), ensure_ascii=False))
        elif kind == "tool_result":
            pieces.append(_message_text(block.get("content")))
        elif kind == "thinking":
            pieces.append(block.get("thinking", ""))
    return "\n".join(pieces)


def conversation_tokens(conv: Conversation) -> int:
    """Estimate the prompt tokens of a pivot conversation (fronts whose requests are not
    Anthropic-shaped), with the same weights as :func:`estimate_tokens`."""
    total = text_tokens(conv.instructions)
    if conv.tools:
        tools = [[t.name, t.description, t.parameters] for t in conv.tools]
        total += TOOLS.total("pivot", tuple(t.name for t in conv.tools), tools,
                             lambda: _pivot_tools_tokens(conv))
    for turn in conv.turns:
        total += MESSAGE_OVERHEAD
        for item in turn:
            if isinstance(item, Message):
                total += sum(IMAGE_TOKENS if isinstance(p, Image) else text_tokens(p.text)
                             for p in item.parts)
            elif isinstance(item, FunctionCall):
                total += TOOL_OVERHEAD + text_tokens(item.name) + text_tokens(item.arguments)
            else:
                total += TOOL_OVERHEAD + text_tokens(item.output) + IMAGE_TOKENS * len(
                    item.images)
    return total


def _pivot_tools_tokens(conv: Conversation) -> int:
    return sum(TOOL_OVERHEAD + text_tokens(tool.name + tool.description) + text_tokens(
        json.dumps(tool.parameters, ensure_ascii=False)) for tool in conv.tools)


def conversation_text(conv: Conversation) -> str:
    """What a tokenizer endpoint counts for a pivot conversation (see :func:`count_text`)."""
    parts = [conv.instructions] if conv.instructions else []
    parts += [json.dumps({"name": t.name, "description": t.description,
                          "parameters": t.parameters}, ensure_ascii=False) for t in conv.tools]
    for turn in conv.turns:
        for item in turn:
            if isinstance(item, Message):
                parts += [p.text for p in item.parts if not isinstance(p, Image)]
            elif isinstance(item, FunctionCall):
                parts.append(item.arguments)
            elif isinstance(item, FunctionCallOutput):
                parts.append(item.output)
    return "\n".join(p for p in parts if p)
