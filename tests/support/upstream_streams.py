"""LM Studio-style Responses event streams for unit and property tests."""

from __future__ import annotations

import secrets
from typing import Any

from tests.emulator.events import build_output
from tests.emulator.script import Call, Reasoning, Text

__all__ = ["Call", "Reasoning", "Text", "llamacpp_events", "lmstudio_events"]


def lmstudio_events(
    *parts: Text | Reasoning | Call,
    incomplete: bool = False,
    usage: dict[str, Any] | None = None,
    chunk_size: int = 3,
) -> list[dict[str, Any]]:
    """created, in_progress, the items' events, then completed (or incomplete)."""
    from tests.emulator.script import Reply

    items, events = build_output(Reply(*parts, incomplete=incomplete), chunk_size)
    response = {"id": "resp_" + secrets.token_hex(24), "object": "response",
                "status": "in_progress", "output": []}
    final = dict(response, status="incomplete" if incomplete else "completed", output=items,
                 usage=usage, incomplete_details={"reason": "max_output_tokens"}
                 if incomplete else None)
    stream = [{"type": "response.created", "response": response},
              {"type": "response.in_progress", "response": response},
              *events,
              {"type": "response.incomplete" if incomplete else "response.completed",
               "response": final}]
    for n, event in enumerate(stream):
        event["sequence_number"] = n
    return stream


def llamacpp_events(*calls: Call) -> list[dict[str, Any]]:
    """llama.cpp's /v1/responses quirks: several calls interleaved (all ``added`` first,
    then the deltas, then the ``done``s), no sequence_number, output_index or
    content_index, and no function_call_arguments.done."""
    stream = lmstudio_events(*calls)
    added = [e for e in stream if e["type"] == "response.output_item.added"]
    deltas = [e for e in stream if e["type"] == "response.function_call_arguments.delta"]
    done = [e for e in stream if e["type"] == "response.output_item.done"]
    # round-robin the deltas of the different calls
    by_item: dict[str, list[dict[str, Any]]] = {}
    for e in deltas:
        by_item.setdefault(e["item_id"], []).append(e)
    mixed = []
    while any(by_item.values()):
        for queue in by_item.values():
            if queue:
                mixed.append(queue.pop(0))
    out = [stream[0], *added, *mixed, *done, stream[-1]]
    for e in out:
        for key in ("sequence_number", "output_index", "content_index"):
            e.pop(key, None)
    return out
