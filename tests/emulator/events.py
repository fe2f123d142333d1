"""Builders for output items, response objects and SSE events (LM Studio flavour)."""

from __future__ import annotations

import json
import random
import secrets
from typing import Any

from .script import Call, Reasoning, Reply, Text
from .state import Item, Plan

Event = dict[str, Any]
DELTA_EVENTS = frozenset({"response.output_text.delta", "response.function_call_arguments.delta"})


def new_response_id() -> str:
    return "resp_" + secrets.token_hex(24)


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def build_output(reply: Reply, chunk_size: int) -> tuple[list[Item], list[Event]]:
    """Final output items and the per-item stream events (without sequence numbers)."""
    items: list[Item] = []
    events: list[Event] = []
    for index, part in enumerate(reply.items):
        last = index == len(reply.items) - 1
        status = "incomplete" if reply.incomplete and last else "completed"
        where = {"output_index": index}
        if isinstance(part, Reasoning):
            item_id = "rs_" + secrets.token_hex(16)
            added = {"id": item_id, "type": "reasoning", "summary": [], "content": []}
            done = {**added, "content": [{"type": "reasoning_text", "text": part.text}]}
            events += [
                {"type": "response.output_item.added", **where, "item": added},
                {
                    "type": "response.reasoning_text.done",
                    "item_id": item_id,
                    **where,
                    "content_index": 0,
                    "text": part.text,
                },
                {"type": "response.output_item.done", **where, "item": done},
            ]
        elif isinstance(part, Text):
            item_id = "msg_" + secrets.token_hex(16)
            base = {"id": item_id, "type": "message", "role": "assistant"}
            empty_part = {"type": "output_text", "text": "", "annotations": []}
            full_part = {**empty_part, "text": part.text}
            done = {**base, "status": status, "content": [full_part]}
            at = {"item_id": item_id, **where, "content_index": 0}
            events.append(
                {
                    "type": "response.output_item.added",
                    **where,
                    "item": {**base, "status": "in_progress", "content": []},
                }
            )
            events.append({"type": "response.content_part.added", **at, "part": empty_part})
            events += [
                {"type": "response.output_text.delta", **at, "delta": chunk, "logprobs": []}
                for chunk in _chunks(part.text, chunk_size)
            ]
            events += [
                {"type": "response.output_text.done", **at, "text": part.text, "logprobs": []},
                {"type": "response.content_part.done", **at, "part": full_part},
                {"type": "response.output_item.done", **where, "item": done},
            ]
        elif isinstance(part, Call):
            item_id = "fc_" + secrets.token_hex(16)
            call_id = part.call_id or f"call_{random.randrange(10**8, 10**9)}"
            base = {"id": item_id, "type": "function_call", "call_id": call_id, "name": part.name}
            args = part.arguments_json
            done = {**base, "arguments": args, "status": status}
            at = {"item_id": item_id, **where}
            events.append(
                {
                    "type": "response.output_item.added",
                    **where,
                    "item": {**base, "arguments": "", "status": "in_progress"},
                }
            )
            if part.args_mode == "deltas":
                events += [
                    {"type": "response.function_call_arguments.delta", **at, "delta": chunk}
                    for chunk in _chunks(args, chunk_size)
                ]
            events += [
                {"type": "response.function_call_arguments.done", **at, "arguments": args},
                {"type": "response.output_item.done", **where, "item": done},
            ]
        else:  # pragma: no cover - guarded by the Reply type
            raise TypeError(f"unsupported reply part {part!r}")
        items.append(done)
    return items, events


def response_object(
    plan: Plan,
    response_id: str,
    created_at: int,
    *,
    status: str,
    output: list[Item] | None = None,
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Responses API `response` object echoing the request's settings."""
    body, record = plan.body, plan.record
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": error,
        "incomplete_details": ({"reason": "max_output_tokens"} if status == "incomplete" else None),
        "instructions": record.instructions_used,
        "max_output_tokens": body.get("max_output_tokens"),
        "model": plan.model.key,
        "output": output or [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": record.previous_response_id,
        "reasoning": body.get("reasoning"),
        "store": body.get("store", True),
        "temperature": body.get("temperature"),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": record.tools,
        "top_p": body.get("top_p"),
        "truncation": "disabled",
        "usage": usage,
        "metadata": body.get("metadata") or {},
    }


def sse(event: Event) -> bytes:
    """One server-sent event: `event: <type>` then `data: <json>`."""
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
