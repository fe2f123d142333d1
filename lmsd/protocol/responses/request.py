"""Pivot conversation -> LM Studio's ``POST /v1/responses`` body (chained or in full)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..pivot import Conversation, FunctionTool, ToolChoice


def merge_adjacent_user_text(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fold a text-only user message into the user text message right before it.

    Claude Code puts a ``role: "system"`` message right after a user turn; folding keeps
    the user/assistant alternation that strict chat templates require.
    """
    merged: list[dict[str, Any]] = []
    for item in items:
        prev = merged[-1] if merged else None
        if (
            prev is not None
            and item.get("type") == "message" == prev.get("type")
            and item["role"] == "user" == prev["role"]
            and all(p["type"] == "input_text" for p in item["content"])
            and all(p["type"] == "input_text" for p in prev["content"])
        ):
            merged[-1] = {"type": "message", "role": "user",
                          "content": prev["content"] + item["content"]}
        else:
            merged.append(item)
    return merged


def join_items(per_turn: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The ``input`` of a request from its turns' items (``pivot.turn_json``)."""
    return merge_adjacent_user_text([item for items in per_turn for item in items])


def function_tools(tools: Iterable[FunctionTool]) -> list[dict[str, Any]]:
    """Flat Responses function tools, in the client's order."""
    out = []
    for tool in tools:
        fn: dict[str, Any] = {"type": "function", "name": tool.name}
        if tool.description:
            fn["description"] = tool.description
        fn["parameters"] = tool.parameters
        out.append(fn)
    return out


def _tool_choice(choice: ToolChoice | None, tools: list[dict[str, Any]]
                 ) -> tuple[str | None, list[dict[str, Any]], bool]:
    """LM Studio takes only ``none|auto|required``: forcing one named tool is done by
    sending only that tool with ``required``."""
    if choice is None:
        return None, tools, True
    if choice.name is not None:
        tools = [t for t in tools if t["name"] == choice.name]
    return choice.mode, tools, choice.parallel


def build_responses_request(conv: Conversation, *, model: str, items: list[dict[str, Any]],
                            previous_response_id: str | None = None) -> dict[str, Any]:
    """The JSON body for ``POST /v1/responses``.

    Tools and instructions are sent on every request: LM Studio does not restore tools
    from ``previous_response_id``, and resending identical instructions costs nothing
    once they are in the prefix cache.
    """
    body: dict[str, Any] = {"model": model, "input": items}
    if conv.instructions:
        body["instructions"] = conv.instructions
    if previous_response_id:
        body["previous_response_id"] = previous_response_id
    choice, tools, parallel = _tool_choice(conv.tool_choice, function_tools(conv.tools))
    if tools:
        body["tools"] = tools
        if choice:
            body["tool_choice"] = choice
        if not parallel:
            body["parallel_tool_calls"] = False
    if conv.max_output_tokens is not None:
        body["max_output_tokens"] = conv.max_output_tokens
    if conv.temperature is not None:
        body["temperature"] = conv.temperature
    if conv.top_p is not None:
        body["top_p"] = conv.top_p
    body["stream"] = True
    body["store"] = True
    return body
