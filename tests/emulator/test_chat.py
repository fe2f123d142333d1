"""The emulator's /v1/chat/completions, driven by the official openai SDK's chat client."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import openai
import pytest
import trio
from openai import AsyncOpenAI

from tests.emulator import Call, Reasoning, Reply, Text, count_tokens

# the `start` fixture (tests/conftest.py): serve an Emulator, get (emu, openai client, url)
Start = Callable[..., Awaitable[tuple[Any, Any, str]]]

MODEL = "qwen/qwen3-coder-30b"
BASH = {
    "type": "function",
    "function": {
        "name": "Bash",
        "description": "Run a shell command",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
    },
}



async def chunks_of(client: AsyncOpenAI, **kwargs: Any) -> list[Any]:
    with trio.fail_after(10):
        stream = await client.chat.completions.create(model=MODEL, stream=True, **kwargs)
        return [chunk async for chunk in stream]


async def test_stream_text_reasoning_and_usage(start: Start) -> None:
    emu, client, _ = await start(chunk_size=3, usage_mode="openai")
    emu.script(Reply(Reasoning("let me think"), Text("hello world")))
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    chunks = await chunks_of(client, messages=messages, stream_options={"include_usage": True})
    first = chunks[0].choices[0]
    assert first.delta.role == "assistant" and first.delta.content == ""
    body = [c for c in chunks if c.choices]
    reasoning = [c.choices[0].delta.model_extra.get("reasoning_content") for c in body]
    assert "".join(r for r in reasoning if r) == "let me think"
    texts = [c.choices[0].delta.content for c in body[1:] if c.choices[0].delta.content]
    assert len(texts) > 1 and "".join(texts) == "hello world"
    assert [c.choices[0].finish_reason for c in body][-1] == "stop"
    assert all(c.choices[0].finish_reason is None for c in body[:-1])
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    expected = count_tokens(
        [{"type": "message", "role": "user", "content": "hi"}], instructions="be brief"
    )
    assert usage.prompt_tokens == expected > 0 and usage.completion_tokens > 0
    assert usage.completion_tokens_details.reasoning_tokens == 3
    assert all(c.id == chunks[0].id and c.id.startswith("chatcmpl-") for c in chunks)
    record = emu.log[-1]
    assert record.path == "/v1/chat/completions" and record.outcome == "completed"
    assert record.instructions_used == "be brief" and record.input_tokens == expected


async def test_stream_tool_calls_by_index(start: Start) -> None:
    emu, client, _ = await start(chunk_size=4)
    emu.script(
        Reply(Text("running"), Call("Bash", {"command": "ls -la"}, call_id="call_fixed"),
              Call("Read", {"file_path": "/tmp/x"}))
    )
    chunks = await chunks_of(client, messages=[{"role": "user", "content": "go"}], tools=[BASH])
    assert all(c.usage is None for c in chunks)
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    heads = [tc for tc in calls if tc.id is not None]
    assert [(h.index, h.id, h.function.name, h.function.arguments) for h in heads] == [
        (0, "call_fixed", "Bash", ""),
        (1, heads[1].id, "Read", ""),
    ]
    assert heads[1].id.startswith("call_") and heads[1].id[5:].isdigit()
    for index, expected in ((0, {"command": "ls -la"}), (1, {"file_path": "/tmp/x"})):
        mine = [tc for tc in calls if tc.index == index]
        assert mine[0].id is not None and all(tc.id is None for tc in mine[1:])
        fragments = [tc.function.arguments for tc in mine[1:]]
        assert len(fragments) > 1 and json.loads("".join(fragments)) == expected
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_stream_helper_default_policy_tool_loop(start: Start) -> None:
    _, client, _ = await start()
    messages: list[dict[str, Any]] = [{"role": "user", "content": "run echo"}]
    async with client.chat.completions.stream(
        model=MODEL, messages=messages, tools=[BASH]
    ) as stream:
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "Bash"
    assert json.loads(call.function.arguments)["command"] == "echo hello-from-tool"
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "hello-from-tool"},
    ]
    async with client.chat.completions.stream(
        model=MODEL, messages=messages, tools=[BASH]
    ) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.content == "done"
    assert final.choices[0].finish_reason == "stop"


async def test_non_streaming_and_length(start: Start) -> None:
    emu, client, _ = await start()
    emu.script(
        Reply(Reasoning("hmm"), Text("partial"), Call("Bash", {"command": "ls"})),
        Reply(Text("cut off"), incomplete=True),
    )
    done = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], tools=[BASH]
    )
    message = done.choices[0].message
    assert done.object == "chat.completion" and done.choices[0].finish_reason == "tool_calls"
    assert message.content == "partial" and message.model_extra["reasoning_content"] == "hmm"
    assert message.tool_calls and json.loads(message.tool_calls[0].function.arguments) == {
        "command": "ls"
    }
    assert done.usage is not None and done.usage.prompt_tokens > 0
    cut = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}]
    )
    assert cut.choices[0].finish_reason == "length"
    assert cut.choices[0].message.content == "cut off"
    assert emu.log[-1].outcome == "incomplete"


async def test_errors_and_models(start: Start) -> None:
    emu, client, url = await start()
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(
            model="google/gemma-3-12b", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.BadRequestError, match="call_nope"):
        await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"},
                      {"role": "tool", "tool_call_id": "call_nope", "content": "x"}],
        )
    async with httpx.AsyncClient() as raw:
        response = await raw.post(f"{url}/v1/chat/completions", json={"model": MODEL})
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages"
    assert [m.id async for m in client.models.list()] == [MODEL]
    assert emu.generations == [] and emu.pending_replies == 0


@pytest.mark.parametrize("include_usage", [True, False])
async def test_as_llama_server_the_last_chunk_carries_its_timings(start: Start,
                                                                  include_usage: bool) -> None:
    """llama-server puts ``timings`` on the last chunk (the usage chunk with include_usage,
    else the finish chunk): ``cache_n`` what its prefix cache held, ``prompt_n`` the rest,
    from the emulator's prefix cache; only there, and only as llama-server."""
    emu, client, _ = await start(usage_mode="openai", prefill_seconds_per_token=1e-5)
    emu.llama_server = True
    messages = [{"role": "user", "content": "count to ten " * 10}]
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    timings = []
    for _ in range(2):
        chunks = await chunks_of(client, messages=messages, **options)
        assert all("timings" not in (c.model_extra or {}) for c in chunks[:-1])
        timings.append(chunks[-1].model_extra["timings"])
        assert (chunks[-1].choices == []) is include_usage
    for t, record in zip(timings, emu.log, strict=True):
        assert (t["cache_n"], t["prompt_n"]) == (record.cached_tokens,
                                                 record.input_tokens - record.cached_tokens)
        assert t["prompt_ms"] == pytest.approx(1e-5 * t["prompt_n"] * 1000)
        assert t["predicted_n"] > 0
    # the same prompt again: all cached but its last token, which llama.cpp re-evaluates
    assert timings[0]["cache_n"] == 0 and timings[1]["prompt_n"] == 1
    plain = await client.chat.completions.create(model=MODEL, messages=messages)
    assert plain.model_extra["timings"]["cache_n"] == emu.log[-1].cached_tokens > 0
    emu.llama_server = False
    chunks = await chunks_of(client, messages=messages, **options)
    assert all("timings" not in (c.model_extra or {}) for c in chunks)


async def test_as_llama_server_response_completed_carries_its_timings(start: Start) -> None:
    emu, client, url = await start(usage_mode="openai")
    emu.llama_server = True
    async with httpx.AsyncClient(base_url=url) as http:
        for _ in range(2):
            answer = await http.post("/v1/responses", json={
                "model": MODEL, "input": "count to ten " * 10, "stream": True})
            events = [json.loads(line[6:]) for line in answer.text.splitlines()
                      if line.startswith("data: ")]
    assert events[-1]["type"] == "response.completed"
    assert [e for e in events if "timings" in e] == [events[-1]]
    record = emu.log[-1]
    assert events[-1]["timings"]["cache_n"] == record.cached_tokens > 0
    assert events[-1]["timings"]["prompt_n"] == record.input_tokens - record.cached_tokens
