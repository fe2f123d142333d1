"""POST /v1/chat/completions: the OpenAI chat format over the same scripting and policy.

Chat messages are turned into Responses-style context items (leading system/developer
messages become the instructions, assistant `tool_calls` become function_call items, tool
messages function_call_output items), so the scripted replies, the default policy, the
token counts and the prefix cache behave as they do for /v1/responses. Chat requests are
stateless (nothing is stored) and take no injected faults: those stay queued for
/v1/responses. As llama-server (``emu.llama_server``) it adds llama.cpp's ``timings`` to the
last chunk of a stream (the usage chunk when there is one) and to a whole completion.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from .script import Call, Reasoning, Reply, Text
from .state import Emulator, Item, Plan, RequestRecord, _check_call_ids, render_context, tokenize
from .validate import ApiError

ROLES = ("system", "developer", "user", "assistant", "tool")
Chunk = dict[str, Any]


def new_completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def _content_parts(content: Any, where: str, *, output: bool = False) -> list[dict[str, Any]]:
    """Chat content (string, list of parts, or None) as Responses content parts."""
    text_type = "output_text" if output else "input_text"
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": text_type, "text": content}]
    if not isinstance(content, list):
        raise ApiError(f"Invalid type for '{where}.content'.", param=f"{where}.content")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"type": text_type, "text": part["text"]})
        elif kind == "image_url" and not output:
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            parts.append({"type": "input_image", "image_url": url})
        else:
            raise ApiError(
                f"Invalid content part at '{where}.content[{j}]'.", param=f"{where}.content"
            )
    return parts


def _text(parts: list[dict[str, Any]]) -> str:
    return "".join(str(p.get("text", "")) for p in parts)


def chat_context(messages: Any) -> tuple[str | None, list[Item]]:
    """(instructions, context items) for a chat `messages` list; raise ApiError."""
    if not isinstance(messages, list) or not messages:
        raise ApiError("'messages' must be a non-empty array.", param="messages")
    leading: list[str] = []
    items: list[Item] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            raise ApiError(f"Invalid 'role' at '{where}'.", param=f"{where}.role")
        assert isinstance(message, dict)
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str):
                raise ApiError(
                    f"'{where}.tool_call_id' is required.", param=f"{where}.tool_call_id"
                )
            output = _text(_content_parts(message.get("content"), where))
            items.append({"type": "function_call_output", "call_id": call_id, "output": output})
            continue
        if role == "assistant":
            parts = _content_parts(message.get("content"), where, output=True)
            reasoning = message.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                items.append(
                    {"type": "reasoning", "content": [{"type": "reasoning_text",
                                                       "text": reasoning}]}
                )
            if parts:
                items.append({"type": "message", "role": "assistant", "content": parts})
            for call in message.get("tool_calls") or []:
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not isinstance(call.get("id"), str):
                    raise ApiError(
                        f"Invalid tool call in '{where}.tool_calls'.", param=f"{where}.tool_calls"
                    )
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call["id"],
                        "name": function.get("name"),
                        "arguments": function.get("arguments", ""),
                    }
                )
            continue
        parts = _content_parts(message.get("content"), where)
        if role in ("system", "developer") and not items:
            leading.append(_text(parts))
            continue
        items.append({"type": "message", "role": role, "content": parts})
    if not items:
        raise ApiError("'messages' must contain a user message.", param="messages")
    return ("\n".join(leading) if leading else None), items


def chat_tools(tools: Any) -> list[dict[str, Any]]:
    """Chat tools ({type, function: {...}}) flattened to the Responses function-tool shape."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise ApiError("Invalid type for 'tools'.", param="tools")
    flat = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(function, dict) or not isinstance(
            function.get("name"), str
        ):
            raise ApiError(f"Invalid tool at 'tools[{i}]'.", param=f"tools[{i}]")
        flat.append({"type": "function", **function})
    return flat


def plan_chat(emu: Emulator, record: RequestRecord, body: Any) -> Plan:
    """Validate a chat completions body and build its context; raise ApiError."""
    if not isinstance(body, dict):
        raise ApiError("Request body must be a JSON object.")
    if not isinstance(body.get("model"), str):
        raise ApiError("'model' is required.", param="model", code="invalid_type")
    record.model = body["model"]
    record.stream = bool(body.get("stream"))
    model = emu.models.get(body["model"])
    if model is None or not model.loaded:
        raise ApiError(
            f"Model '{body['model']}' not found", status=404, param="model",
            code="model_not_found",
        )
    instructions, items = chat_context(body.get("messages"))
    record.new_items = record.context_items = items
    record.instructions_used = instructions
    record.tools = tools = chat_tools(body.get("tools"))
    _check_call_ids(items)
    if not model.vision and any(
        isinstance(p, dict) and p.get("type") == "input_image"
        for item in items
        for p in (item.get("content") if isinstance(item.get("content"), list) else [])
    ):
        raise ApiError("Model does not support images. Please use a model that does.")
    tokens = tokenize(render_context(items, instructions, tools))
    cached = emu.cached_prefix(model.key, tokens)
    record.input_tokens, record.cached_tokens = len(tokens), cached
    plan = Plan(record, body, model, tokens, cached)
    if len(tokens) > model.context_length:
        overflow = emu.overflow(len(tokens), model.context_length)
        if not emu.overflow_in_stream or not record.stream:
            raise overflow
        plan.overflow = overflow  # streamed as a `data: {"error": ...}` chunk
    return plan


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _output_items(reply: Reply, call_ids: list[str]) -> list[Item]:
    """The reply as Responses output items (for usage and the prefix cache)."""
    items: list[Item] = []
    calls = iter(call_ids)
    for part in reply.items:
        if isinstance(part, Reasoning):
            items.append({"type": "reasoning", "content": [{"type": "reasoning_text",
                                                            "text": part.text}]})
        elif isinstance(part, Text):
            items.append({"type": "message", "role": "assistant",
                          "content": [{"type": "output_text", "text": part.text}]})
        elif isinstance(part, Call):
            items.append({"type": "function_call", "call_id": next(calls), "name": part.name,
                          "arguments": part.arguments_json})
    return items


def finish_reason(reply: Reply) -> str:
    if reply.incomplete:
        return "length"
    return "tool_calls" if any(isinstance(p, Call) for p in reply.items) else "stop"


def chat_usage(emu: Emulator, plan: Plan, reply: Reply, call_ids: list[str]) -> dict[str, Any]:
    """Chat-format usage (same counts as /v1/responses); updates the prefix cache."""
    usage = emu.usage(plan, _output_items(reply, call_ids))
    return {
        "prompt_tokens": usage["input_tokens"],
        "completion_tokens": usage["output_tokens"],
        "total_tokens": usage["total_tokens"],
        "prompt_tokens_details": {"cached_tokens": usage["input_tokens_details"]["cached_tokens"]},
        "completion_tokens_details": {
            "reasoning_tokens": usage["output_tokens_details"]["reasoning_tokens"]
        },
    }


def llama_timings(emu: Emulator, plan: Plan, predicted: int) -> dict[str, Any]:
    """llama-server's ``timings`` (``server_slot_stats::to_json``): ``cache_n`` what its
    prefix cache held, ``prompt_n`` what it computed for this request; the times are what
    the emulator spends (its prefill and token delays)."""
    prompt_ms = emu.prefill_seconds_per_token * plan.uncached * 1000
    predicted_ms = emu.token_delay * predicted * 1000
    return {
        "cache_n": plan.cached,
        "prompt_n": plan.uncached,
        "prompt_ms": prompt_ms,
        "prompt_per_token_ms": prompt_ms / plan.uncached if plan.uncached else 0.0,
        "prompt_per_second": plan.uncached * 1000 / prompt_ms if prompt_ms else 0.0,
        "predicted_n": predicted,
        "predicted_ms": predicted_ms,
        "predicted_per_token_ms": predicted_ms / predicted if predicted else 0.0,
        "predicted_per_second": predicted * 1000 / predicted_ms if predicted_ms else 0.0,
    }


def _call_ids(reply: Reply) -> list[str]:
    return [
        p.call_id or f"call_{secrets.randbelow(9 * 10**8) + 10**8}"
        for p in reply.items
        if isinstance(p, Call)
    ]


def _message(reply: Reply, call_ids: list[str]) -> dict[str, Any]:
    text = "".join(p.text for p in reply.items if isinstance(p, Text))
    reasoning = "".join(p.text for p in reply.items if isinstance(p, Reasoning))
    calls = [p for p in reply.items if isinstance(p, Call)]
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [
            {"id": call_id, "type": "function",
             "function": {"name": call.name, "arguments": call.arguments_json}}
            for call_id, call in zip(call_ids, calls, strict=True)
        ]
    return message


def chat_deltas(reply: Reply, call_ids: list[str], chunk_size: int) -> list[dict[str, Any]]:
    """The `delta` objects of a streamed reply after the role chunk, in order."""
    deltas: list[dict[str, Any]] = []
    calls = iter(call_ids)
    index = 0
    for part in reply.items:
        if isinstance(part, Reasoning):
            deltas += [{"reasoning_content": c} for c in _chunks(part.text, chunk_size)]
        elif isinstance(part, Text):
            deltas += [{"content": c} for c in _chunks(part.text, chunk_size)]
        elif isinstance(part, Call):
            args = part.arguments_json
            deltas.append(
                {"tool_calls": [{"index": index, "id": next(calls), "type": "function",
                                 "function": {"name": part.name, "arguments": ""}}]}
            )
            fragments = _chunks(args, chunk_size) if part.args_mode == "deltas" else [args]
            deltas += [
                {"tool_calls": [{"index": index, "function": {"arguments": f}}]}
                for f in fragments
                if f
            ]
            index += 1
    return deltas


async def chat_plain(emu: Emulator, plan: Plan) -> dict[str, Any]:
    """The non-streaming chat.completion object."""
    record = plan.record
    record.response_id = new_completion_id()
    await trio.sleep(emu.prefill_seconds_per_token * plan.uncached)
    reply = emu.next_reply(record)
    call_ids = _call_ids(reply)
    usage = chat_usage(emu, plan, reply, call_ids)
    record.outcome = "incomplete" if reply.incomplete else "completed"
    timings = {"timings": llama_timings(emu, plan, usage["completion_tokens"])} \
        if emu.llama_server else {}
    return {
        "id": record.response_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": plan.model.key,
        "choices": [
            {
                "index": 0,
                "message": _message(reply, call_ids),
                "logprobs": None,
                "finish_reason": finish_reason(reply),
            }
        ],
        "usage": usage,
        "system_fingerprint": plan.model.key,
        **timings,
    }


def chat_sse(data: Chunk | str) -> bytes:
    """One chat SSE line: `data: <json>` (or `data: [DONE]`)."""
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


async def chat_stream(emu: Emulator, plan: Plan) -> AsyncIterator[bytes]:
    """The chat.completion.chunk stream: role chunk, deltas, finish chunk, usage, [DONE]."""
    record = plan.record
    if plan.overflow is not None:  # llama-server streams the error body as a chunk
        record.outcome = "error"
        record.error = {"message": plan.overflow.message}
        yield chat_sse(plan.overflow.body())
        return
    await trio.sleep(emu.prefill_seconds_per_token * plan.uncached)
    record.response_id = new_completion_id()
    options = plan.body.get("stream_options")
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    base = {
        "id": record.response_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": plan.model.key,
        "system_fingerprint": plan.model.key,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> Chunk:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        out = {**base, "choices": [choice]}
        if include_usage:
            out["usage"] = None
        return out

    reply = emu.next_reply(record)
    call_ids = _call_ids(reply)
    usage = chat_usage(emu, plan, reply, call_ids)
    async with engine_turn(emu):
        yield chat_sse(chunk({"role": "assistant", "content": ""}))
        if emu.unfinished_streams:
            emu.unfinished_streams -= 1
            record.outcome = "interrupted"
            yield chat_sse("[DONE]")
            return
        for delta in chat_deltas(reply, call_ids, emu.chunk_size):
            yield chat_sse(chunk(delta))
            if emu.one_at_a_time == "interrupt" and emu.waiting:
                # llama-cpp-python: another request wants the lock; the answer ends here
                emu.interrupted += 1
                record.outcome = "interrupted"
                yield chat_sse("[DONE]")
                return
            await trio.sleep(emu.token_delay)
        async for data in _chat_tail(emu, plan, record, reply, usage, base, include_usage,
                                     chunk):
            yield data


@asynccontextmanager
async def engine_turn(emu: Emulator) -> AsyncIterator[None]:
    """Hold the engine's one lock (``emu.one_at_a_time``) for a request; a no-op without."""
    if emu.one_at_a_time is None:
        yield
        return
    emu.waiting += 1
    try:
        await emu.engine_lock.acquire()
    finally:
        emu.waiting -= 1
    try:
        yield
    finally:
        emu.engine_lock.release()


async def _chat_tail(emu: Emulator, plan: Plan, record: RequestRecord, reply: Reply,
                     usage: dict[str, Any], base: Chunk, include_usage: bool,
                     chunk: Any) -> AsyncIterator[bytes]:
    """The finish chunk, the usage chunk and ``[DONE]``."""
    last = [chunk({}, finish_reason(reply))]
    if include_usage:
        last.append({**base, "choices": [], "usage": usage})
    if emu.llama_server:  # on the last chunk, whichever it is
        last[-1]["timings"] = llama_timings(emu, plan, usage["completion_tokens"])
    for data in last:
        yield chat_sse(data)
    record.outcome = "incomplete" if reply.incomplete else "completed"
    yield chat_sse("[DONE]")
