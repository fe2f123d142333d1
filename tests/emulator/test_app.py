"""Tests of the LM Studio emulator itself, driven by the official openai SDK."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import trio

from tests.emulator import (
    Call,
    Fault,
    ModelSpec,
    Reasoning,
    Reply,
    Text,
    count_tokens,
    tokenize,
)

MODEL = "qwen/qwen3-coder-30b"
BASH_TOOL = {
    "type": "function",
    "name": "Bash",
    "description": "Run a shell command",
    "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
}
PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGAAAAAE"
    "AAH2FzhVAAAAAElFTkSuQmCC"
)

# the `start` fixture (tests/conftest.py): serve an Emulator, get (emu, openai client, url)
Start = Callable[..., Awaitable[tuple[Any, Any, str]]]



async def collect(stream: Any) -> list[Any]:
    with trio.fail_after(10):
        return [event async for event in stream]


def message_of(error: openai.APIStatusError) -> str:
    """The error body's message (the SDK prefixes `.message` with the status code)."""
    assert isinstance(error.body, dict)
    return error.body["message"]


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": text}


# -- streaming shape -------------------------------------------------------------------------


async def test_stream_helper_final_response(start: Start) -> None:
    emu, client, _ = await start()
    emu.script(
        Reply(Reasoning("let me think"), Text("hello world"), Call("Bash", {"command": "ls"}))
    )
    async with client.responses.stream(model=MODEL, input="hi", tools=[BASH_TOOL]) as stream:
        types = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert final.status == "completed"
    assert final.id.startswith("resp_") and len(final.id) == len("resp_") + 48
    reasoning, message, call = final.output
    assert reasoning.type == "reasoning"
    assert reasoning.content is not None and reasoning.content[0].text == "let me think"
    assert message.type == "message" and final.output_text == "hello world"
    assert call.type == "function_call" and call.name == "Bash"
    assert json.loads(call.arguments) == {"command": "ls"}
    assert call.id is not None and call.id.startswith("fc_")
    assert call.call_id.startswith("call_") and call.call_id[5:].isdigit()
    assert call.call_id != call.id
    assert emu.log[-1].outcome == "completed" and final.id in emu.responses


async def test_stream_event_order_and_sequence(start: Start) -> None:
    emu, client, _ = await start(chunk_size=3)
    emu.script(Reply(Reasoning("a long thought"), Text("streamed text"), Call("Read", {"p": 1})))
    events = await collect(await client.responses.create(model=MODEL, input="hi", stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    types = [e.type for e in events]
    assert "response.reasoning_text.delta" not in types
    (thought,) = [e for e in events if e.type == "response.reasoning_text.done"]
    assert thought.text == "a long thought" and thought.content_index == 0
    assert types[2:5] == [
        "response.output_item.added",
        "response.reasoning_text.done",
        "response.output_item.done",
    ]
    assert events[2].item.id.startswith("rs_") and events[2].item.content == []
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == "streamed text"
    msg_types = types[5 : types.index("response.output_item.done", 5) + 1]
    assert msg_types[:2] == ["response.output_item.added", "response.content_part.added"]
    assert msg_types[-3:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    added = events[5].item
    assert added.id.startswith("msg_") and added.status == "in_progress"
    args = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(args) > 1 and json.loads("".join(args)) == {"p": 1}
    (args_done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert json.loads(args_done.arguments) == {"p": 1}
    call_added = next(
        e for e in events if e.type == "response.output_item.added" and e.output_index == 2
    )
    assert call_added.item.arguments == "" and call_added.item.call_id != call_added.item.id
    assert events[-1].type == "response.completed"
    assert events[0].response.status == "in_progress"


async def test_raw_sse_framing(start: Start) -> None:
    _, _, url = await start()
    body = {"model": MODEL, "input": "hi", "stream": True}
    async with (
        httpx.AsyncClient() as http,
        http.stream("POST", f"{url}/v1/responses", json=body) as r,
    ):
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = (await r.aread()).decode()
    blocks = [b for b in raw.split("\n\n") if b]
    assert "[DONE]" not in raw
    for block in blocks:
        event_line, data_line = block.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        assert json.loads(data_line[6:])["type"] == event_line[7:]


async def test_args_done_only(start: Start) -> None:
    emu, client, _ = await start()
    emu.script(Reply(Call("Bash", {"command": "pwd"}, args_mode="done_only")))
    events = await collect(await client.responses.create(model=MODEL, input="x", stream=True))
    types = [e.type for e in events]
    assert "response.function_call_arguments.delta" not in types
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert json.loads(done.arguments) == {"command": "pwd"}
    assert json.loads(events[-1].response.output[0].arguments) == {"command": "pwd"}


async def test_non_streaming_and_usage_shape(start: Start) -> None:
    emu, client, url = await start()
    emu.script(Reply(Reasoning("think think"), Text("plain answer")))
    response = await client.responses.create(model=MODEL, input="question")
    assert response.status == "completed" and response.output_text == "plain answer"
    emu.script(Reply(Text("again")))
    async with httpx.AsyncClient() as http:
        raw = (await http.post(f"{url}/v1/responses", json={"model": MODEL, "input": "q"})).json()
    usage = raw["usage"]
    assert set(usage) == {
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "input_tokens_details",
        "output_tokens_details",
    }
    assert set(usage["input_tokens_details"]) == {"cached_tokens"}
    assert set(usage["output_tokens_details"]) == {"reasoning_tokens"}
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens == len(tokenize("think think"))
    assert raw["object"] == "response" and raw["model"] == MODEL


# -- stateful chaining -------------------------------------------------------------------------


async def test_previous_response_chaining(start: Start) -> None:
    emu, client, _ = await start()
    emu.script(Reply(Text("first answer")), Reply(Text("second answer")))
    first = await client.responses.create(model=MODEL, input="first question")
    second = await client.responses.create(
        model=MODEL, input=[user("second question")], previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    record = emu.log[-1]
    assert record.previous_response_id == first.id
    assert record.new_items == [user("second question")]
    context = record.context_items
    assert context[0] == user("first question")
    assert context[1]["type"] == "message" and context[1]["role"] == "assistant"
    assert context[1]["content"][0]["text"] == "first answer"
    assert context[2] == user("second question")


async def test_tools_are_not_restored(start: Start) -> None:
    emu, client, _ = await start()
    first = await client.responses.create(model=MODEL, input="hi", tools=[BASH_TOOL])
    await client.responses.create(model=MODEL, input="more", previous_response_id=first.id)
    assert emu.log[0].tools == [BASH_TOOL] and emu.log[1].tools == []


@pytest.mark.parametrize(("mode", "expected"), [("inherit", "be terse"), ("replace", None)])
async def test_instructions_modes(start: Start, mode: str, expected: str | None) -> None:
    emu, client, _ = await start(instructions_mode=mode)
    first = await client.responses.create(model=MODEL, input="a", instructions="be terse")
    second = await client.responses.create(model=MODEL, input="b", previous_response_id=first.id)
    assert emu.log[-1].instructions_used == expected
    assert second.instructions == expected
    await client.responses.create(
        model=MODEL, input="c", previous_response_id=second.id, instructions="new rules"
    )
    assert emu.log[-1].instructions_used == "new rules"


async def test_previous_response_not_found(start: Start) -> None:
    emu, client, _ = await start()
    first = await client.responses.create(model=MODEL, input="a")
    emu.wipe_history()
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model=MODEL, input="b", previous_response_id=first.id)
    assert info.value.code == "previous_response_not_found"
    assert info.value.param == "previous_response_id"
    assert message_of(info.value) == f"Previous response with id '{first.id}' not found."
    assert emu.log[-1].outcome == "rejected" and emu.log[-1].status == 400


async def test_store_false_is_not_chainable(start: Start) -> None:
    emu, client, _ = await start()
    first = await client.responses.create(model=MODEL, input="a", store=False)
    assert first.id not in emu.responses
    with pytest.raises(openai.BadRequestError):
        await client.responses.create(model=MODEL, input="b", previous_response_id=first.id)


# -- strict validation -------------------------------------------------------------------------

CALL = {"type": "function_call", "call_id": "call_1", "name": "Bash", "arguments": "{}"}
INVALID_REQUESTS: dict[str, tuple[dict[str, Any], str, str | None]] = {
    "list_output": (
        {"input": [CALL, {"type": "function_call_output", "call_id": "call_1", "output": []}]},
        "invalid_union",
        "Invalid type for 'input'.",
    ),
    "missing_output": (
        {"input": [CALL, {"type": "function_call_output", "call_id": "call_1"}]},
        "invalid_union",
        "Invalid type for 'input'.",
    ),
    "mixed_text_image": (
        {
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "look"},
                        {"type": "input_image", "image_url": PNG},
                    ],
                }
            ]
        },
        "invalid_union",
        None,
    ),
    "remote_image": (
        {
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": "https://x/y.png"}],
                }
            ]
        },
        "invalid_union",
        None,
    ),
    "webp_image": (
        {
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": "data:image/webp;base64,AA"}],
                }
            ]
        },
        "invalid_union",
        None,
    ),
    "unknown_item": ({"input": [{"type": "item_reference", "id": "x"}]}, "invalid_union", None),
    "bad_tool_type": (
        {"input": "x", "tools": [BASH_TOOL, {"type": "web_search"}]},
        "invalid_string",  # LM Studio 0.4.11+ (lmstudio-bug-tracker #1810, #1812)
        "Invalid",
    ),
    "nested_tool": (
        {"input": "x", "tools": [{"type": "function", "function": {"name": "Bash"}}]},
        "unrecognized_keys",
        None,
    ),
    "object_tool_choice": (
        {"input": "x", "tool_choice": {"type": "function", "name": "Bash"}},
        "invalid_union",
        None,
    ),
    "unknown_key": ({"input": "x", "user": "me"}, "unrecognized_keys", None),
}


@pytest.mark.parametrize("case", list(INVALID_REQUESTS))
async def test_strict_validation(start: Start, case: str) -> None:
    emu, client, _ = await start()
    extra, code, message = INVALID_REQUESTS[case]
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model=MODEL, extra_body=extra)
    assert info.value.status_code == 400 and info.value.code == code
    if message is not None:
        assert message_of(info.value) == message
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "invalid_request_error"
    if case == "bad_tool_type":
        assert info.value.param == "tools.1.type"
    if case == "unknown_key":
        assert info.value.param == "user"
    record = emu.log[-1]
    with trio.fail_after(5):
        await record.done.wait()
    assert record.outcome == "rejected" and record.status == 400 and record.reply is None


async def test_unmatched_call_id(start: Start) -> None:
    _, client, _ = await start()
    orphan = {"type": "function_call_output", "call_id": "call_9", "output": "x"}
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model=MODEL, input=[user("a"), orphan])
    assert "call_9" in message_of(info.value)


async def test_call_output_matches_previous_response(start: Start) -> None:
    emu, client, _ = await start()
    emu.script(Reply(Call("Bash", {"command": "ls"}, call_id="call_42")), Reply(Text("ok")))
    first = await client.responses.create(model=MODEL, input="run ls", tools=[BASH_TOOL])
    output = {"type": "function_call_output", "call_id": "call_42", "output": "file.txt"}
    second = await client.responses.create(
        model=MODEL, input=[output], previous_response_id=first.id, tools=[BASH_TOOL]
    )
    assert second.output_text == "ok"


async def test_images(start: Start) -> None:
    _, client, url = await start()
    image_only = {"role": "user", "content": [{"type": "input_image", "image_url": PNG}]}
    with pytest.raises(openai.BadRequestError, match="does not support images"):
        await client.responses.create(model=MODEL, input=[image_only])
    async with httpx.AsyncClient() as http:
        loaded = await http.post(f"{url}/api/v1/models/load", json={"model": "google/gemma-3-12b"})
    assert loaded.json()["status"] == "loaded"
    response = await client.responses.create(
        model="google/gemma-3-12b", input=[user("describe"), image_only]
    )
    assert response.status == "completed"


# -- models ------------------------------------------------------------------------------------


async def test_model_endpoints(start: Start) -> None:
    emu, client, url = await start()
    async with httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/lmstudio-greeting")).json() == {"lmstudio": True}
        openai_models = (await http.get("/v1/models")).json()
        assert openai_models["object"] == "list"
        assert openai_models["data"] == [
            {"id": MODEL, "object": "model", "owned_by": "organization_owner"}
        ]
        native = {m["key"]: m for m in (await http.get("/api/v1/models")).json()["models"]}
        qwen = native[MODEL]
        assert qwen["max_context_length"] == 262144 and qwen["format"] == "gguf"
        assert qwen["loaded_instances"][0]["config"]["context_length"] == 32768
        assert qwen["capabilities"] == {"vision": False, "trained_for_tool_use": True}
        assert native["google/gemma-3-12b"]["loaded_instances"] == []
        v0 = {m["id"]: m for m in (await http.get("/api/v0/models")).json()["data"]}
        assert v0[MODEL]["state"] == "loaded" and v0[MODEL]["loaded_context_length"] == 32768
        assert v0["google/gemma-3-12b"]["state"] == "not-loaded"

        load = await http.post("/api/v1/models/load", json={"model": MODEL, "context_length": 8192})
        assert load.json() == {
            "type": "llm",
            "instance_id": MODEL,
            "load_time_seconds": load.json()["load_time_seconds"],
            "status": "loaded",
            "load_config": {"context_length": 8192},
        }
        native = {m["key"]: m for m in (await http.get("/api/v1/models")).json()["models"]}
        assert native[MODEL]["loaded_instances"][0]["config"]["context_length"] == 8192
        assert emu.models[MODEL].context_length == 8192

        unload = await http.post("/api/v1/models/unload", json={"instance_id": MODEL})
        assert unload.status_code == 200
    with pytest.raises(openai.NotFoundError) as info:
        await client.responses.create(model=MODEL, input="hi")
    assert info.value.code == "model_not_found"
    assert message_of(info.value) == f"Model '{MODEL}' not found"
    posts = [(r.path, r.body) for r in emu.log if r.method == "POST"]
    assert posts[:2] == [
        ("/api/v1/models/load", {"model": MODEL, "context_length": 8192}),
        ("/api/v1/models/unload", {"instance_id": MODEL}),
    ]
    assert emu.log[-1].path == "/v1/responses" and emu.log[-1].status == 404


# -- context overflow --------------------------------------------------------------------------


def small() -> list[ModelSpec]:
    return [ModelSpec(MODEL, context_length=20)]


LONG_INPUT = "word " * 50


async def test_overflow_http400(start: Start) -> None:
    """LM Studio's wording carries no code: only the words say it is an overflow."""
    emu, client, _ = await start(models=small())
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model=MODEL, input=LONG_INPUT)
    assert info.value.code is None
    n = emu.log[-1].input_tokens
    assert message_of(info.value).startswith(
        f"Trying to keep the first {n} tokens when context the"
    )
    assert "loaded with context length of only 20 tokens" in message_of(info.value)


async def test_overflow_http500(start: Start) -> None:
    emu, client, _ = await start(models=small(), overflow_mode="http500",
                                 overflow_wording="lmstudio_0425")
    with pytest.raises(openai.InternalServerError) as info:
        await client.responses.create(model=MODEL, input=LONG_INPUT)
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "internal_error"
    n = emu.log[-1].input_tokens
    assert f"(n_keep: {n} >= n_ctx: 20)" in body["message"]
    assert emu.log[-1].outcome == "error"


async def test_overflow_stream_error(start: Start) -> None:
    """LM Studio's SSE error event holds the whole error body, JSON-encoded, in message."""
    emu, client, _ = await start(models=small(), overflow_mode="stream_error")
    emu.script(Reply(Text("unused")))
    events = await collect(
        await client.responses.create(model=MODEL, input=LONG_INPUT, stream=True)
    )
    assert [e.type for e in events] == ["response.created", "error"]
    inner = json.loads(events[1].message)
    assert "context length of only 20 tokens" in inner["error"]["message"]
    assert emu.log[-1].outcome == "error" and emu.pending_replies == 1


async def test_overflow_response_failed(start: Start) -> None:
    emu, client, _ = await start(models=small(), overflow_mode="response_failed",
                                 overflow_wording="lmstudio_n_keep")
    events = await collect(
        await client.responses.create(model=MODEL, input=LONG_INPUT, stream=True)
    )
    assert [e.type for e in events][-1] == "response.failed"
    n = emu.log[-1].input_tokens
    assert events[-1].response.error.message == \
        f"Cannot truncate prompt with n_keep ({n}) >= n_ctx (20)"


@pytest.mark.parametrize(("wording", "words"), [
    ("lmstudio", "Trying to keep the first {n} tokens"),
    ("lmstudio_n_keep", "n_keep ({n}) >= n_ctx (20)"),
    ("lmstudio_0425", "(n_keep: {n} >= n_ctx: 20)"),
    ("llama_server", "request ({n} tokens) exceeds the available context size (20 tokens)"),
    ("openai", "maximum context length is 20 tokens. However, you requested {n} tokens"),
    ("vllm", "maximum context length is 20 tokens. However, your request has {n} input"),
])
async def test_every_overflow_wording(start: Start, wording: str, words: str) -> None:
    emu, client, _ = await start(models=small(), overflow_wording=wording)
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model=MODEL, input=LONG_INPUT)
    assert words.format(n=emu.log[-1].input_tokens) in str(info.value.body)
    if wording == "llama_server":
        assert isinstance(info.value.body, dict)
        assert info.value.body["type"] == "exceed_context_size_error"
        assert info.value.body["n_ctx"] == 20


# -- incomplete and faults ---------------------------------------------------------------------


async def test_incomplete(start: Start) -> None:
    emu, client, _ = await start()
    emu.script(Reply(Text("cut off mid"), incomplete=True), Reply(Text("short"), incomplete=True))
    events = await collect(await client.responses.create(model=MODEL, input="x", stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.status == "incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    assert emu.log[-1].outcome == "incomplete"
    plain = await client.responses.create(model=MODEL, input="x")
    assert plain.status == "incomplete" and plain.output_text == "short"


async def test_fault_http_keeps_reply_queued(start: Start) -> None:
    emu, client, _ = await start()
    emu.script(Reply(Text("after retry")))
    emu.inject(Fault.http(503, "overloaded"))
    with pytest.raises(openai.InternalServerError) as info:
        await client.responses.create(model=MODEL, input="x")
    assert info.value.status_code == 503 and message_of(info.value) == "overloaded"
    assert emu.log[-1].outcome == "error" and emu.log[-1].fault == Fault.http(503, "overloaded")
    retry = await client.responses.create(model=MODEL, input="x")
    assert retry.output_text == "after retry"


async def test_fault_drop_stream(start: Start) -> None:
    emu, client, _ = await start()
    emu.inject(Fault.drop(after_events=5))
    seen: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async for event in await client.responses.create(model=MODEL, input="x", stream=True):
            seen.append(event.type)
    assert len(seen) == 5
    record = emu.log[-1]
    with trio.fail_after(5):
        await record.done.wait()
    assert record.outcome == "dropped" and record.response_id not in emu.responses


async def test_fault_drop_non_streaming(start: Start) -> None:
    emu, client, _ = await start()
    emu.inject(Fault.drop())
    with pytest.raises(openai.APIConnectionError):
        await client.responses.create(model=MODEL, input="x")
    assert emu.log[-1].outcome == "dropped"


async def test_fault_error_event(start: Start) -> None:
    emu, client, _ = await start()
    emu.inject(Fault.error_event(after_events=3, message="model crashed", code="server_error"))
    events = await collect(await client.responses.create(model=MODEL, input="x", stream=True))
    assert [e.type for e in events][3:] == ["error"]
    assert events[3].message == "model crashed" and events[3].code == "server_error"
    assert events[3].sequence_number == 3
    assert emu.log[-1].outcome == "error"


async def test_fault_failed(start: Start) -> None:
    emu, client, _ = await start()
    emu.script(Reply(Text("kept")))
    emu.inject(Fault.failed(message="oops", code="server_error"))
    events = await collect(await client.responses.create(model=MODEL, input="x", stream=True))
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    assert events[-1].response.status == "failed"
    assert events[-1].response.error.message == "oops"
    assert emu.log[-1].outcome == "failed" and emu.pending_replies == 1


async def test_fault_slow_first_byte(start: Start) -> None:
    emu, client, _ = await start()
    emu.inject(Fault.slow_first_byte(30), Fault.slow_first_byte(0.01))
    with trio.move_on_after(0.3) as scope:
        await client.responses.create(model=MODEL, input="x")
    assert scope.cancelled_caught
    with trio.fail_after(5):
        await emu.log[-1].done.wait()
    assert emu.log[-1].outcome == "cancelled" and emu.log[-1].status is None
    response = await client.responses.create(model=MODEL, input="x")
    assert response.status == "completed" and emu.log[-1].outcome == "completed"


async def test_fault_hang(start: Start) -> None:
    emu, client, _ = await start()
    emu.script(Reply(Text("kept")))
    emu.inject(Fault.hang())
    with trio.move_on_after(0.3) as scope:
        await client.responses.create(model=MODEL, input="x", stream=True)
    assert scope.cancelled_caught
    record = emu.log[-1]
    with trio.fail_after(5):
        await record.done.wait()
    assert record.outcome == "cancelled" and emu.pending_replies == 1


async def test_client_disconnect_is_recorded(start: Start) -> None:
    emu, client, _ = await start(token_delay=0.01)
    emu.script(Reply(Text("x" * 4000)))
    stream = await client.responses.create(model=MODEL, input="x", stream=True)
    async with aclosing(stream.__aiter__()) as events:
        async for event in events:
            if event.type == "response.output_text.delta":
                break
    await stream.close()
    record = emu.log[-1]
    with trio.fail_after(5):
        await record.done.wait()
    assert record.outcome == "cancelled"
    assert record.response_id is not None and record.response_id not in emu.responses


# -- default policy ----------------------------------------------------------------------------


async def test_default_policy(start: Start) -> None:
    _, client, _ = await start()
    first = await client.responses.create(model=MODEL, input="run it", tools=[BASH_TOOL])
    (call,) = first.output
    assert call.type == "function_call" and call.name == "Bash"
    assert json.loads(call.arguments)["command"] == "echo hello-from-tool"
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "hello"}
    second = await client.responses.create(
        model=MODEL, input=[result], previous_response_id=first.id, tools=[BASH_TOOL]
    )
    assert second.output_text == "done"
    plain = await client.responses.create(model=MODEL, input="hi")
    assert plain.output_text == "Hello from the LM Studio emulator."


async def test_callable_script_entry(start: Start) -> None:
    emu, client, _ = await start()
    emu.script(lambda record: Reply(Text(f"you said {record.new_items[-1]['content']}")))
    response = await client.responses.create(model=MODEL, input="ping")
    assert response.output_text == "you said ping"


# -- prefix cache and usage --------------------------------------------------------------------


@pytest.mark.parametrize("usage_mode", ["lmstudio", "openai"])
async def test_prefix_cache_accounting(start: Start, usage_mode: str) -> None:
    emu, client, _ = await start(usage_mode=usage_mode)
    emu.script(Reply(Text("first reply")), Reply(Text("second reply")))
    first = await client.responses.create(model=MODEL, input="hello there", instructions="sys")
    second = await client.responses.create(
        model=MODEL, input="and again", previous_response_id=first.id
    )
    r1, r2 = emu.log
    assert r1.input_tokens == count_tokens(r1.context_items, instructions="sys")
    assert r1.cached_tokens == 0
    output = emu.responses[first.id].output
    prefix = count_tokens(r1.context_items, instructions="sys") + count_tokens(output)
    assert r2.input_tokens == emu.count_tokens(r2.context_items, instructions="sys")
    assert r2.cached_tokens == prefix < r2.input_tokens
    assert first.usage is not None and second.usage is not None
    if usage_mode == "openai":
        assert first.usage.input_tokens == r1.input_tokens
        assert second.usage.input_tokens == r2.input_tokens
        assert second.usage.input_tokens_details.cached_tokens == prefix
    else:
        assert second.usage.input_tokens == r2.input_tokens - prefix
        assert second.usage.input_tokens_details.cached_tokens == 0
    assert first.usage.output_tokens == count_tokens(output)


async def test_prefix_cache_diverges(start: Start) -> None:
    emu, client, _ = await start(usage_mode="openai")
    await client.responses.create(model=MODEL, input="alpha beta gamma", instructions="one")
    await client.responses.create(model=MODEL, input="alpha beta gamma", instructions="two")
    # the rendered prompt differs at the instructions text: only "<|system|>\n" is shared
    assert emu.log[-1].cached_tokens == len(tokenize("<|system|>"))


# -- standalone CLI ----------------------------------------------------------------------------


async def test_cli_serves_standalone() -> None:
    command = [sys.executable, "-m", "tests.emulator", "--port", "0", "--context-length", "4096"]
    cwd = Path(__file__).resolve().parents[2]
    process = await trio.lowlevel.open_process(command, cwd=cwd, stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None
        output = b""
        with trio.fail_after(20):
            while b"listening on " not in output or not output.endswith(b"\n"):
                chunk = await process.stderr.receive_some()
                assert chunk, output
                output += chunk
        url = output.decode().split("listening on ")[1].split()[0]
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/lmstudio-greeting")).json() == {"lmstudio": True}
            models = (await http.get("/api/v0/models")).json()["data"]
            assert models[0]["loaded_context_length"] == 4096
    finally:
        process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
            if process.stderr is not None:
                await process.stderr.aclose()
