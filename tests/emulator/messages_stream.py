"""The answers of /v1/messages: a whole message, and its stream in each server's grammar.

- llama-server (``tools/server/server-task.cpp``, the ``to_json_anthropic`` pair): its
  message id is ``chatcmpl-...``; ``message_start`` carries the usage (``input_tokens``
  uncached, ``cache_read_input_tokens``) and comes with the first token; the thinking
  block is index 0, the text block 0 or 1 (1 once reasoning has appeared), a tool call
  ``reasoning + text started + call index``, computed when it streams; the text block
  stays open while calls stream, and every block is stopped only at the end (indices
  recomputed from the final message), the thinking block after an empty
  ``signature_delta``; a ``tool_use`` start has no ``input``; ``message_delta`` has only
  ``output_tokens``; no ``ping`` event and no ``[DONE]``.
- Anthropic (vLLM, SGLang, Ollama, LM Studio): ``msg_`` ids, ``event: ping`` after
  ``message_start``, one block at a time (start, deltas, stop), thinking signed,
  cumulative usage again in ``message_delta``. A call scripted ``done_only`` carries its
  whole ``input`` in its start and no deltas, as non-incremental servers send it.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import AsyncIterator
from typing import Any

import trio

from .chat import _output_items
from .messages import ANTHROPIC_GRAMMAR, stream_error
from .script import Call, DropConnection, Fault, Reasoning, Reply, Text
from .state import Emulator, Plan
from .validate import ApiError

Event = tuple[str, dict[str, Any]]  # (SSE event name, data)


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def stop_reason(reply: Reply) -> str:
    if reply.incomplete:
        return "max_tokens"
    return "tool_use" if any(isinstance(p, Call) for p in reply.items) else "end_turn"


_ALNUM = string.ascii_letters + string.digits


def call_ids(emu: Emulator, reply: Reply) -> list[str]:
    """llama-server's ids are 32 random letters and digits (no ``call_`` prefix);
    Anthropic's ``toolu_``."""
    def new_id() -> str:
        if emu.messages_flavor == "llama_server":
            return "".join(secrets.choice(_ALNUM) for _ in range(32))
        return "toolu_" + secrets.token_hex(12)
    return [p.call_id or new_id() for p in reply.items if isinstance(p, Call)]


def usage_of(emu: Emulator, plan: Plan, reply: Reply, ids: list[str]) -> dict[str, int]:
    """Anthropic usage: ``input_tokens`` excludes the cache reads. Updates the prefix
    cache, as a generation does."""
    out = emu.usage(plan, _output_items(reply, ids))["output_tokens"]
    return {"input_tokens": plan.uncached, "cache_read_input_tokens": plan.cached,
            "output_tokens": out}


def message_object(emu: Emulator, plan: Plan, reply: Reply, message_id: str
                   ) -> dict[str, Any]:
    """The non-streamed answer."""
    ids = call_ids(emu, reply)
    calls = iter(ids)
    content: list[dict[str, Any]] = []
    for part in reply.items:
        if isinstance(part, Reasoning):
            content.append({"type": "thinking", "thinking": part.text, "signature": ""})
        elif isinstance(part, Text):
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, Call):
            content.append({"type": "tool_use", "id": next(calls), "name": part.name,
                            "input": json.loads(part.arguments_json or "{}")})
    return {"id": message_id, "type": "message", "role": "assistant", "content": content,
            "model": served_model(emu, plan), "stop_reason": stop_reason(reply),
            "stop_sequence": None, "usage": usage_of(emu, plan, reply, ids)}


def served_model(emu: Emulator, plan: Plan) -> str:
    """llama-server names its own model (its alias), whatever the request asked for."""
    return plan.model.key if emu.messages_flavor == "llama_server" else plan.body["model"]


def _start(message_id: str, model: str, usage: dict[str, int]) -> Event:
    return ("message_start", {"type": "message_start", "message": {
        "id": message_id, "type": "message", "role": "assistant", "content": [],
        "model": model, "stop_reason": None, "stop_sequence": None,
        "usage": {**usage, "output_tokens": 0}}})


def _block(kind: str, index: int, **fields: Any) -> Event:
    return (kind, {"type": kind, "index": index, **fields})


def _delta(index: int, delta: dict[str, Any]) -> Event:
    return _block("content_block_delta", index, delta=delta)


def _end(reply: Reply, usage: dict[str, int]) -> list[Event]:
    return [("message_delta", {"type": "message_delta", "delta": {
                "stop_reason": stop_reason(reply), "stop_sequence": None}, "usage": usage}),
            ("message_stop", {"type": "message_stop"})]


def llama_events(reply: Reply, ids: list[str], usage: dict[str, int], size: int,
                 message_id: str, model: str) -> list[Event]:
    events = [_start(message_id, model, usage)]
    reasoning = text = False
    calls = 0
    for part in reply.items:
        if isinstance(part, Text | Reasoning) and not part.text:
            continue  # llama-server opens a block for content only
        if isinstance(part, Reasoning):
            if not reasoning:
                events.append(_block("content_block_start", 0,
                                     content_block={"type": "thinking", "thinking": ""}))
            reasoning = True
            events += [_delta(0, {"type": "thinking_delta", "thinking": c})
                       for c in _chunks(part.text, size)]
        elif isinstance(part, Text):
            index = 1 if reasoning else 0
            if not text:
                events.append(_block("content_block_start", index,
                                     content_block={"type": "text", "text": ""}))
            text = True
            events += [_delta(index, {"type": "text_delta", "text": c})
                       for c in _chunks(part.text, size)]
        elif isinstance(part, Call):
            index = int(reasoning) + int(text) + calls
            events.append(_block("content_block_start", index, content_block={
                "type": "tool_use", "id": ids[calls], "name": part.name}))
            args = part.arguments_json
            pieces = _chunks(args, size) if part.args_mode == "deltas" else [args]
            events += [_delta(index, {"type": "input_json_delta", "partial_json": c})
                       for c in pieces if c]
            calls += 1
    if reasoning:  # the final result closes the blocks, with its own indices
        events += [_delta(0, {"type": "signature_delta", "signature": ""}),
                   _block("content_block_stop", 0)]
    has_text = any(isinstance(p, Text) and p.text for p in reply.items)
    if has_text:
        events.append(_block("content_block_stop", int(reasoning)))
    events += [_block("content_block_stop", int(reasoning) + int(has_text) + i)
               for i in range(calls)]
    return events + _end(reply, {"output_tokens": usage["output_tokens"]})


def anthropic_events(reply: Reply, ids: list[str], usage: dict[str, int], size: int,
                     message_id: str, model: str) -> list[Event]:
    events = [_start(message_id, model, usage), ("ping", {"type": "ping"})]
    calls = iter(ids)
    parts = [p for p in reply.items if not isinstance(p, Text | Reasoning) or p.text]
    for index, part in enumerate(parts):
        if isinstance(part, Reasoning):
            events.append(_block("content_block_start", index, content_block={
                "type": "thinking", "thinking": "", "signature": ""}))
            events += [_delta(index, {"type": "thinking_delta", "thinking": c})
                       for c in _chunks(part.text, size)]
            events.append(_delta(index, {"type": "signature_delta",
                                         "signature": secrets.token_hex(16)}))
        elif isinstance(part, Text):
            events.append(_block("content_block_start", index,
                                 content_block={"type": "text", "text": ""}))
            events += [_delta(index, {"type": "text_delta", "text": c})
                       for c in _chunks(part.text, size)]
        elif isinstance(part, Call):
            whole = part.args_mode != "deltas"
            given = json.loads(part.arguments_json or "{}") if whole else {}
            events.append(_block("content_block_start", index, content_block={
                "type": "tool_use", "id": next(calls), "name": part.name, "input": given}))
            if not whole:
                events += [_delta(index, {"type": "input_json_delta", "partial_json": c})
                           for c in _chunks(part.arguments_json, size)]
        events.append(_block("content_block_stop", index))
    return events + _end(reply, usage)


def sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def new_message_id(emu: Emulator) -> str:
    if emu.messages_flavor == "llama_server":
        return "chatcmpl-" + secrets.token_hex(16)
    return "msg_" + secrets.token_hex(12)


async def messages_stream(emu: Emulator, plan: Plan, fault: Fault | None
                          ) -> AsyncIterator[bytes]:
    """The event stream for one request, honouring faults, overflow and delays."""
    record = plan.record
    await trio.sleep(emu.prefill_seconds_per_token * plan.uncached)
    record.response_id = message_id = new_message_id(emu)
    if plan.overflow is not None:  # reported inside the stream
        record.outcome = "error"
        record.error = {"message": plan.overflow.message}
        yield sse("message_start", _start(message_id, served_model(emu, plan), {
            "input_tokens": plan.uncached, "cache_read_input_tokens": plan.cached})[1])
        yield sse("error", stream_error(emu, plan.overflow))
        return
    reply = emu.next_reply(record)
    ids = call_ids(emu, reply)
    usage = usage_of(emu, plan, reply, ids)
    grammar = anthropic_events if emu.messages_flavor in ANTHROPIC_GRAMMAR else llama_events
    events = grammar(reply, ids, usage, emu.chunk_size, message_id, served_model(emu, plan))
    cut = fault if fault is not None and fault.kind in ("drop", "error_event", "failed") \
        else None
    if cut is not None:
        events = events[: cut.after_events if cut.kind != "failed" else 1]
    for name, data in events:
        yield sse(name, data)
        await trio.sleep(emu.token_delay if name == "content_block_delta" else 0)
    if cut is not None and cut.kind == "drop":
        record.outcome = "dropped"
        raise DropConnection
    if cut is not None:
        record.outcome = "error"
        yield sse("error", stream_error(emu, ApiError(cut.message, status=500)))
        return
    record.outcome = "incomplete" if reply.incomplete else "completed"
