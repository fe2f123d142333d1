"""The emulator's /v1/messages and /v1/messages/count_tokens, driven by the official
anthropic SDK (and raw HTTP where the wire itself is the point), in each server's voice."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anthropic
import httpx
import pytest
import trio

from tests.emulator import Call, Emulator, Fault, Reasoning, Reply, Text, count_tokens
from tests.emulator.overflow import overflow_message

Start = Callable[..., Awaitable[tuple[Any, Any, str]]]
MODEL = "qwen/qwen3-coder-30b"
BASH = {"name": "Bash", "description": "Run a shell command",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}
USER = [{"role": "user", "content": "hi"}]


def sse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each event; comments and blank lines skipped."""
    out = []
    for chunk in raw.decode().split("\n\n"):
        lines = [line for line in chunk.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        name = next(line[7:] for line in lines if line.startswith("event: "))
        data = json.loads(next(line[6:] for line in lines if line.startswith("data: ")))
        out.append((name, data))
    return out


async def stream_raw(url: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        return await http.post("/v1/messages", json={"stream": True, **body})


async def served(start: Start, flavor: str = "llama_server", **options: Any
                 ) -> tuple[Emulator, str]:
    emu, _, url = await start(**options)
    emu.messages_flavor = flavor
    return emu, url


async def test_llama_server_grammar(start: Start) -> None:
    emu, url = await served(start, chunk_size=3)
    emu.script(Reply(Reasoning("think"), Text("Running it."), Call("Bash", {"command": "ls"})))
    answer = await stream_raw(url, {"model": "anything", "max_tokens": 50, "messages": USER,
                                    "tools": [BASH]})
    events = sse_events(answer.content)
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert "ping" not in names and b"[DONE]" not in answer.content
    start_event = events[0][1]["message"]
    assert start_event["id"].startswith("chatcmpl-")
    assert start_event["usage"]["cache_read_input_tokens"] == 0
    assert start_event["usage"]["input_tokens"] == count_tokens(
        [{"type": "message", "role": "user", "content": "hi"}], tools=emu.log[-1].tools)
    starts = [(d["index"], d["content_block"]["type"]) for n, d in events
              if n == "content_block_start"]
    assert starts == [(0, "thinking"), (1, "text"), (2, "tool_use")]
    tool_start = next(d for n, d in events if n == "content_block_start"
                      and d["index"] == 2)["content_block"]
    assert "input" not in tool_start and not tool_start["id"].startswith("call_")
    # every block stays open until the end: the stops come last, in index order
    stops = [i for i, (n, _) in enumerate(events) if n == "content_block_stop"]
    assert [events[i][1]["index"] for i in stops] == [0, 1, 2]
    assert stops[0] > max(i for i, (n, _) in enumerate(events) if n == "content_block_delta"
                          and events[i][1]["delta"]["type"] != "signature_delta")
    assert events[-2][1] == {"type": "message_delta", "delta": {
        "stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": events[-2][1]["usage"]["output_tokens"]}}
    args = "".join(d["delta"]["partial_json"] for n, d in events
                   if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta")
    assert json.loads(args) == {"command": "ls"}


async def test_anthropic_grammar_through_the_sdk(start: Start) -> None:
    emu, url = await served(start, "anthropic", chunk_size=3)
    emu.script(Reply(Reasoning("think"), Text("Running it."),
                     Call("Bash", {"command": "ls"}, args_mode="done_only")))
    async with anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0) as client, \
            client.messages.stream(model=MODEL, max_tokens=50, messages=USER,
                                   tools=[BASH]) as stream:
        message = await stream.get_final_message()
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    assert message.content[1].text == "Running it."
    assert message.content[2].input == {"command": "ls"}
    assert message.id.startswith("msg_") and message.stop_reason == "tool_use"
    raw = await stream_raw(url, {"model": MODEL, "max_tokens": 5, "messages": USER})
    names = [n for n, _ in sse_events(raw.content)]
    assert names[:2] == ["message_start", "ping"]
    assert names[2:5] == ["content_block_start", "content_block_delta", "content_block_delta"]


async def test_the_prefix_cache_and_a_tool_round_trip(start: Start) -> None:
    emu, url = await served(start, "anthropic")
    async with anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0) as client:
        first = await client.messages.create(model=MODEL, max_tokens=50, messages=USER,
                                             tools=[BASH])
        [call] = first.content
        assert call.type == "tool_use" and call.name == "Bash"  # the default policy
        history = [*USER, {"role": "assistant", "content": [call.model_dump()]},
                   {"role": "user", "content": [{"type": "tool_result",
                                                 "tool_use_id": call.id, "content": "ok"}]}]
        second = await client.messages.create(model=MODEL, max_tokens=50, messages=history,
                                              tools=[BASH])
    assert second.content[0].text == "done"
    assert second.usage.cache_read_input_tokens > 0
    assert emu.messages[1].context_items[-1] == {
        "type": "function_call_output", "call_id": call.id, "output": "ok"}


@pytest.mark.parametrize(("flavor", "status", "body"), [
    ("llama_server", 200, None), ("anthropic", 200, None),
    ("ollama", 404, "404 page not found"),
    ("lmstudio", 200, {"error": "Unexpected endpoint or method. (POST "
                                "/v1/messages/count_tokens). Returning 200 anyway"}),
    ("none", 404, {"detail": "Not Found"}),
])
async def test_count_tokens_per_server(start: Start, flavor, status, body) -> None:
    emu, url = await served(start, flavor)
    request = {"model": MODEL, "system": "be brief", "messages": USER, "tools": [BASH]}
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.post("/v1/messages/count_tokens", json=request)
        empty = await http.post("/v1/messages", json={})
    assert answer.status_code == status
    if body is None:
        assert answer.json() == {"input_tokens": count_tokens(
            [{"type": "message", "role": "user", "content": "hi"}], instructions="be brief",
            tools=emu.log[0].tools)}
    else:
        assert (answer.json() if isinstance(body, dict) else answer.text) == body
    # llama-server's conversion throws before any check: 500 (measured on b0c1e570)
    assert empty.status_code == {"none": 404, "llama_server": 500}.get(flavor, 400)


async def test_overflow_as_each_server_says_it(start: Start) -> None:
    emu, url = await served(start, overflow_wording="llama_server")
    emu.models[MODEL].context_length = 5
    words = [{"role": "user", "content": "one two three four five six seven"}]
    answer = await stream_raw(url, {"model": MODEL, "max_tokens": 5, "messages": words})
    n = emu.messages[-1].input_tokens
    assert answer.status_code == 400
    assert answer.json() == {"error": {
        "code": 400, "message": overflow_message("llama_server", n, 5),
        "type": "exceed_context_size_error", "n_prompt_tokens": n, "n_ctx": 5}}
    emu.messages_flavor, emu.overflow_wording = "anthropic", "vllm_budget"
    answer = await stream_raw(url, {"model": MODEL, "max_tokens": 7, "messages": words})
    assert answer.json() == {"type": "error", "error": {
        "type": "invalid_request_error",
        "message": overflow_message("vllm_budget", n, 5, output=7)}}
    emu.overflow_mode = "stream_error"
    answer = await stream_raw(url, {"model": MODEL, "max_tokens": 7, "messages": words})
    assert answer.status_code == 200
    assert [n for n, _ in sse_events(answer.content)] == ["message_start", "error"]


async def test_faults(start: Start) -> None:
    emu, url = await served(start)
    emu.inject(Fault.error_event(after_events=2, message="boom"), Fault.http(503, "busy"),
               Fault.drop(after_events=1))
    emu.script(Reply(Text("hello there")), Reply(Text("again")))
    failed = sse_events((await stream_raw(url, {"model": MODEL, "messages": USER})).content)
    assert [n for n, _ in failed] == ["message_start", "content_block_start", "error"]
    assert failed[-1][1] == {"code": 500, "message": "boom", "type": "server_error"}
    busy = await stream_raw(url, {"model": MODEL, "messages": USER})
    assert busy.status_code == 503 and busy.json()["error"]["message"] == "busy"
    with trio.fail_after(10):
        with pytest.raises(httpx.RemoteProtocolError):
            await stream_raw(url, {"model": MODEL, "messages": USER})
    assert [r.outcome for r in emu.messages] == ["error", "error", "dropped"]
