"""A strict checker for Anthropic stream event sequences (test helper)."""

from __future__ import annotations

import json
from typing import Any

USAGE_KEYS = {
    "input_tokens", "output_tokens", "cache_creation_input_tokens",
    "cache_read_input_tokens", "server_tool_use", "service_tier",
}
STOP_REASONS = {"end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal",
                "pause_turn", "model_context_window_exceeded"}


def check_stream(events: list[dict[str, Any]], *, complete: bool | None = None) -> str:
    """Assert ``events`` is a valid Anthropic stream; return "complete", "error" or "open".

    Valid means: ``message_start`` first and once; blocks opened in index order 0, 1, 2...,
    one at a time, each stopped once, deltas only to the open block and of its kind;
    thinking blocks get a signature before they stop; the stream ends with
    ``message_delta`` + ``message_stop`` (all blocks closed), or with one ``error``.
    """
    assert events, "no events"
    assert events[0]["type"] == "message_start", events[0]
    usage = events[0]["message"]["usage"]
    assert USAGE_KEYS <= usage.keys(), usage
    open_index: int | None = None
    open_kind = None
    signed = False
    next_index = 0
    state = "open"
    for i, ev in enumerate(events[1:], 1):
        kind = ev["type"]
        assert state == "open" or kind == "ping", f"event after end: {ev}"
        if kind == "ping":
            continue
        if kind == "content_block_start":
            assert open_index is None, f"block {ev['index']} started while {open_index} open"
            assert ev["index"] == next_index, f"index {ev['index']} != {next_index}"
            open_index, open_kind = ev["index"], ev["content_block"]["type"]
            signed = False
            next_index += 1
            if open_kind == "tool_use":
                block = ev["content_block"]
                assert block["id"] and block["name"] and block["input"] == {}, block
        elif kind == "content_block_delta":
            assert ev["index"] == open_index, f"delta to {ev['index']}, open is {open_index}"
            dtype = ev["delta"]["type"]
            allowed = {"text": {"text_delta"}, "tool_use": {"input_json_delta"},
                       "thinking": {"thinking_delta", "signature_delta"}}[open_kind]
            assert dtype in allowed, f"{dtype} in a {open_kind} block"
            if dtype == "signature_delta":
                assert ev["delta"]["signature"], "empty signature"
                signed = True
            elif dtype == "thinking_delta":
                assert not signed, "thinking after signature"
        elif kind == "content_block_stop":
            assert ev["index"] == open_index, f"stop {ev['index']}, open is {open_index}"
            if open_kind == "thinking":
                assert signed, "thinking block closed without signature_delta"
            open_index = None
        elif kind == "message_delta":
            assert open_index is None, "message_delta with a block open"
            assert ev["delta"]["stop_reason"] in STOP_REASONS, ev
            assert USAGE_KEYS <= ev["usage"].keys(), ev["usage"]
            assert events[i + 1]["type"] == "message_stop", "message_delta not followed by stop"
        elif kind == "message_stop":
            assert events[i - 1]["type"] == "message_delta"
            state = "complete"
        elif kind == "error":
            assert ev["error"]["type"] and ev["error"]["message"], ev
            state = "error"
        else:
            raise AssertionError(f"unknown event type {kind}")
    if complete is True:
        assert state == "complete", f"stream ended {state}"
    if complete is False:
        assert state != "complete"
    return state


def parse_sse(raw: bytes) -> list[dict[str, Any]]:
    """Parse an Anthropic SSE body, checking each ``event:`` name matches its data type."""
    events = []
    for frame in raw.decode().split("\n\n"):
        if not frame.strip():
            continue
        lines = frame.split("\n")
        name = next(line[7:] for line in lines if line.startswith("event: "))
        data = json.loads("\n".join(line[6:] for line in lines if line.startswith("data: ")))
        assert data["type"] == name, (name, data)
        events.append(data)
    return events


def tool_inputs(events: list[dict[str, Any]]) -> dict[int, Any]:
    """The parsed input of each tool_use block, by index."""
    parts: dict[int, str] = {}
    for ev in events:
        if ev["type"] == "content_block_start" and ev["content_block"]["type"] == "tool_use":
            parts[ev["index"]] = ""
        elif ev["type"] == "content_block_delta" and ev["delta"]["type"] == "input_json_delta":
            parts[ev["index"]] += ev["delta"]["partial_json"]
    return {i: json.loads(s) if s else {} for i, s in parts.items()}


def block_texts(events: list[dict[str, Any]]) -> dict[int, str]:
    """The text of each text block, by index."""
    blocks: dict[int, str] = {}
    for e in events:
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "text_delta":
            blocks[e["index"]] = blocks.get(e["index"], "") + e["delta"]["text"]
    return blocks


def block_starts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``content_block`` of every ``content_block_start``, in order."""
    return [e["content_block"] for e in events if e["type"] == "content_block_start"]


def final_delta(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``message_delta`` event (stop reason, usage)."""
    return next(e for e in events if e["type"] == "message_delta")
