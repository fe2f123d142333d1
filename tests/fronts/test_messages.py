"""End to end: the official anthropic SDK -> lmsd -> the LM Studio emulator."""

from __future__ import annotations

import base64
import json
import logging

import anthropic
import httpx
import pytest
import trio

from tests.emulator import Call, Fault, Reasoning, Reply, Text
from tests.support.anthropic_checks import check_stream, parse_sse
from tests.support.fixtures import body

MODEL = "qwen/qwen3-coder-30b"  # the emulator's loaded model
BASH = {"name": "Bash", "description": "Run a command",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()


def user(text):
    return [{"role": "user", "content": text}]


async def stream_final(client, **kwargs):
    kwargs.setdefault("model", "claude-sonnet-4-6")
    kwargs.setdefault("max_tokens", 1000)
    async with client.messages.stream(**kwargs) as stream:
        return await stream.get_final_message()


async def raw_stream(http, payload, path="/v1/messages"):
    response = await http.post(path, json={**payload, "stream": True})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return parse_sse(response.content)


async def test_streamed_text_through_the_sdk(client, emulator):
    emulator.script(Reply(Text("Hello from the local model.")))
    msg = await stream_final(client, messages=user("hi"))
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "Hello from the local model."
    assert msg.stop_reason == "end_turn"
    assert msg.model == "claude-sonnet-4-6"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    [record] = emulator.generations
    assert record.body["model"] == MODEL  # claude-* mapped to the loaded model
    assert record.body["stream"] is True


async def test_non_streaming_gives_the_same_content(client, emulator):
    emulator.script(Reply(Reasoning("plan"), Text("answer"), Call("Bash", {"command": "ls"})))
    msg = await client.messages.create(model="claude-sonnet-4-6", max_tokens=100,
                                       messages=user("go"), tools=[BASH])
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
    assert msg.content[0].thinking == "plan" and msg.content[0].signature
    assert msg.content[2].input == {"command": "ls"}
    assert msg.stop_reason == "tool_use"


async def test_tool_loop_pairs_call_ids(client, emulator):
    emulator.script(Reply(Text("Running it."), Call("Bash", {"command": "echo hi"})),
                    Reply(Text("It printed hi.")))
    first = await stream_final(client, messages=user("say hi"), tools=[BASH])
    tool_use = first.content[1]
    assert tool_use.type == "tool_use" and first.stop_reason == "tool_use"
    upstream_call_id = emulator.generations[0].response_id and tool_use.id
    assert tool_use.id.startswith("call_")
    history = [*user("say hi"), {"role": "assistant", "content": first.content},
               {"role": "user", "content": [
                   {"type": "tool_result", "tool_use_id": tool_use.id, "content": "hi\n"}]}]
    second = await stream_final(client, messages=history, tools=[BASH])
    assert second.content[0].text == "It printed hi."
    turn2 = emulator.generations[1]
    # chained: LM Studio already holds turn 1, so only the tool result goes up
    assert turn2.body["previous_response_id"] == emulator.generations[0].response_id
    assert turn2.body["input"] == [{"type": "function_call_output",
                                    "call_id": upstream_call_id, "output": "hi\n"}]
    # and LM Studio's reconstructed context pairs it with the model's own call
    call = next(i for i in turn2.context_items if i["type"] == "function_call")
    assert call["call_id"] == upstream_call_id
    assert [t["name"] for t in emulator.generations[1].body["tools"]] == ["Bash"]


async def test_parallel_tool_calls(client, emulator):
    emulator.script(Reply(Call("Bash", {"command": "a"}), Call("Bash", {"command": "b"})))
    msg = await stream_final(client, messages=user("two"), tools=[BASH])
    assert [b.input for b in msg.content] == [{"command": "a"}, {"command": "b"}]
    assert len({b.id for b in msg.content}) == 2


async def test_arguments_only_in_done_event_reach_the_client(client, emulator):
    emulator.script(Reply(Call("Bash", {"command": "pwd"}, args_mode="done_only")))
    msg = await stream_final(client, messages=user("where"), tools=[BASH])
    assert msg.content[0].input == {"command": "pwd"}


async def test_thinking_block_and_its_history(client, emulator):
    emulator.script(Reply(Reasoning("Let me think."), Text("Done thinking.")),
                    Reply(Text("ok")))
    msg = await stream_final(client, messages=user("think"))
    thinking = msg.content[0]
    assert thinking.type == "thinking" and thinking.thinking == "Let me think."
    assert thinking.signature
    history = [*user("think"), {"role": "assistant", "content": msg.content},
               *user("again")]
    await stream_final(client, messages=history)
    assert "Let me think." not in json.dumps(emulator.generations[1].body)


async def test_raw_event_sequence_is_valid(http, emulator):
    emulator.script(Reply(Reasoning("r"), Text("t"), Call("Bash", {"command": "x"})))
    events = await raw_stream(http, {"model": "claude-opus-4-6", "max_tokens": 50,
                                     "messages": user("x"), "tools": [BASH]})
    assert check_stream(events, complete=True) == "complete"
    assert [e["content_block"]["type"] for e in events
            if e["type"] == "content_block_start"] == ["thinking", "text", "tool_use"]


async def test_beta_query_string(http, emulator):
    response = await http.post("/v1/messages?beta=true", json={
        "model": "claude-opus-4-6", "max_tokens": 50, "messages": user("x")})
    assert response.status_code == 200
    assert response.json()["content"][0]["text"] == "Hello from the LM Studio emulator."


async def test_images_are_sent_as_data_urls(client, emulator):
    emulator.models[MODEL].vision = True
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG}}
    await stream_final(client, messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"}, image]}])
    sent = emulator.generations[0].body["input"]
    assert sent[0]["content"] == [{"type": "input_text", "text": "what is this?"}]
    assert sent[1]["content"] == [{"type": "input_image", "detail": "auto",
                                   "image_url": f"data:image/png;base64,{PNG}"}]


async def test_stop_sequences(client, emulator):
    emulator.script(Reply(Text("one two three four")))
    msg = await stream_final(client, messages=user("count"), stop_sequences=["three"])
    assert msg.content[0].text == "one two "
    assert (msg.stop_reason, msg.stop_sequence) == ("stop_sequence", "three")


async def test_max_tokens_stop_reason(client, emulator):
    emulator.script(Reply(Text("cut"), incomplete=True))
    msg = await stream_final(client, messages=user("long"))
    assert msg.stop_reason == "max_tokens"


async def test_captured_claude_code_request(client, emulator, http):
    raw = body("basic_json", 1)
    emulator.script(Reply(Text("done")))
    events = await raw_stream(http, raw)
    check_stream(events, complete=True)
    sent = emulator.generations[0].body
    assert "x-anthropic-billing-header" not in sent["instructions"]
    assert len(sent["tools"]) == 12


# -- pings and cancellation ------------------------------------------------------------------

async def test_pings_while_the_upstream_is_silent(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, ping_interval="0.05")
    emulator.inject(Fault.slow_first_byte(0.6))
    async with httpx.AsyncClient(base_url=server.url) as http:
        events = await raw_stream(http, {"model": "claude-x", "max_tokens": 10,
                                         "messages": user("slow")})
    check_stream(events, complete=True)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start"
    first_block = kinds.index("content_block_start")
    assert kinds[1:first_block].count("ping") >= 2


async def test_client_disconnect_cancels_the_upstream(lmsd, emulator):
    emulator.inject(Fault.hang())
    payload = {"model": "claude-x", "max_tokens": 10, "stream": True, "messages": user("hang")}
    async with (
        httpx.AsyncClient(base_url=lmsd.url) as http,
        http.stream("POST", "/v1/messages", json=payload) as response,
    ):
        async for chunk in response.aiter_raw():
            assert b"message_start" in chunk
            break
        with trio.fail_after(10):
            while not emulator.generations:  # until LM Studio has the request
                await trio.sleep(0.01)
    # leaving the block closed the connection: the client has gone away
    [record] = emulator.generations
    with trio.fail_after(10):
        await record.done.wait()
    assert record.outcome == "cancelled"


# -- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("payload", "status", "fragment"), [
    (b"{not json", 400, "not valid JSON"),
    (b"[]", 400, "expected a JSON object"),
    (json.dumps({"model": "m", "messages": user("x")}).encode(), 400,
     "max_tokens: field required"),
    (json.dumps({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "audio"}]}]}).encode(), 400, "messages.0.content.0.type"),
])
async def test_bad_requests(http, emulator, payload, status, fragment):
    response = await http.post("/v1/messages", content=payload,
                               headers={"content-type": "application/json"})
    assert response.status_code == status
    err = response.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert fragment in err["error"]["message"]
    assert emulator.generations == []


async def test_body_over_the_limit(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, max_body_bytes="1000")
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/v1/messages", json={
            "model": "m", "max_tokens": 5, "messages": user("x" * 5000)})
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"


async def test_unknown_path_is_an_anthropic_404(http):
    response = await http.get("/v2/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


@pytest.mark.parametrize("mode", ["http400", "http500", "stream_error"])
async def test_context_overflow_is_prompt_too_long(client, emulator, mode):
    """Over the context, but not so far over that lmsd refuses it before sending (see
    test_overflow.py): the engine's own overflow is what comes back."""
    emulator.overflow_mode = mode
    emulator.models[MODEL].context_length = 160
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(model="claude-x", max_tokens=10,
                                     messages=user("abc " * 200))
    assert info.value.status_code == 400
    assert info.value.body["error"]["message"].startswith("prompt is too long: ")
    assert "> 160 maximum" in info.value.body["error"]["message"]
    assert len(emulator.generations) == 1


async def test_context_overflow_in_a_stream_is_an_error_event(http, emulator):
    emulator.models[MODEL].context_length = 160
    events = await raw_stream(http, {"model": "claude-x", "max_tokens": 10,
                                     "messages": user("abc " * 200)})
    assert check_stream(events) == "error"
    assert events[-1]["error"]["type"] == "invalid_request_error"
    assert events[-1]["error"]["message"].startswith("prompt is too long: ")
    assert len(emulator.generations) == 1


@pytest.mark.parametrize(("fault", "status", "fragment"), [
    (Fault.http(500, "engine exploded"), 502, "engine exploded"),
    (Fault.error_event(after_events=3, message="bad things", code="server_error"), 502,
     "bad things"),
    (Fault.failed(message="generation failed", code="server_error"), 502,
     "generation failed"),
    (Fault.drop(after_events=4), 502, ""),
])
async def test_upstream_failures_non_streaming(client, emulator, fault, status, fragment):
    emulator.inject(fault)
    with pytest.raises(anthropic.APIStatusError) as info:
        await client.messages.create(model="claude-x", max_tokens=10, messages=user("x"))
    assert info.value.status_code == status
    assert info.value.body["error"]["type"] == "api_error"
    assert fragment in info.value.body["error"]["message"]


@pytest.mark.parametrize("fault", [
    Fault.http(500, "engine exploded"),
    Fault.error_event(after_events=6, message="bad things", code="server_error"),
    Fault.failed(message="generation failed", code="server_error"),
    Fault.drop(after_events=6),
])
async def test_upstream_failures_mid_stream_are_error_events(http, emulator, fault):
    emulator.inject(fault)
    emulator.script(Reply(Text("some text that starts streaming")))
    events = await raw_stream(http, {"model": "claude-x", "max_tokens": 10,
                                     "messages": user("x")})
    assert check_stream(events) == "error"
    assert events[-1]["error"]["type"] == "api_error"


async def test_upstream_unreachable(start_lmsd):
    server = await start_lmsd("http://127.0.0.1:9", model="some-model")
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/v1/messages", json={
            "model": "claude-x", "max_tokens": 5, "messages": user("x")})
        assert response.status_code == 503
        assert "not reachable at http://127.0.0.1:9" in response.json()["error"]["message"]
        events = await raw_stream(http, {"model": "claude-x", "max_tokens": 5,
                                         "messages": user("x")})
    assert check_stream(events) == "error"
    assert "not reachable" in events[-1]["error"]["message"]


async def test_no_model_loaded(start_lmsd, emulator):
    emulator.models[MODEL].loaded = False
    server = await start_lmsd(emulator.url)
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/v1/messages", json={
            "model": "claude-x", "max_tokens": 5, "messages": user("x")})
    assert response.status_code == 503
    assert "no model loaded" in response.json()["error"]["message"]


async def test_model_not_found_upstream(client, emulator):
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.create(model="no/such-model", max_tokens=5, messages=user("x"))


# -- other endpoints -------------------------------------------------------------------------

async def test_count_tokens(client, http):
    raw = body("basic_json", 0)
    counted = await client.messages.count_tokens(
        model=raw["model"], messages=raw["messages"], system=raw["system"], tools=raw["tools"])
    assert 10_000 < counted.input_tokens < 25_000
    response = await http.post("/session/s1/v1/messages/count_tokens?beta=true", json={
        "model": "m", "messages": user("hello")})
    assert response.status_code == 200 and response.json()["input_tokens"] > 0


async def test_models_list(client, http):
    page = await client.models.list(limit=1000)
    ids = [m.id for m in page.data]
    assert ids[0].startswith("claude-") and MODEL in ids
    raw = (await http.get("/v1/models?limit=2")).json()
    assert set(raw) == {"object", "data", "has_more", "first_id", "last_id"} and raw["has_more"]
    assert raw["object"] == "list"


async def test_root_head_and_get(http):
    assert (await http.head("/")).status_code == 200
    assert (await http.get("/")).status_code == 200


async def test_session_routes_and_config(http, emulator):
    response = await http.put("/session/work-1/config", json={
        "model": "google/gemma-3-12b", "allowedTools": ["Read"]})
    assert response.status_code == 200
    assert response.json()["config"] == {"model": "google/gemma-3-12b",
                                         "allowedTools": ["Read"]}
    emulator.models["google/gemma-3-12b"].loaded = True
    read = {"name": "Read", "input_schema": {"type": "object"}}
    response = await http.post("/session/work-1/v1/messages", json={
        "model": "claude-sonnet-4-6", "max_tokens": 5, "messages": user("x"),
        "tools": [BASH, read]})
    assert response.status_code == 200, response.text
    sent = emulator.generations[-1].body
    assert sent["model"] == "google/gemma-3-12b"
    assert [t["name"] for t in sent["tools"]] == ["Read"]
    assert (await http.get("/session/work-1/v1/models")).status_code == 200


@pytest.mark.parametrize("sid", ["..", "a b", "x" * 200, "%2e%2e"])
async def test_bad_session_ids(http, sid):
    response = await http.put(f"/session/{sid}/config", json={"model": "x"})
    assert response.status_code in (400, 404)
    assert response.json()["type"] == "error"


async def test_bad_session_config(http):
    response = await http.put("/session/s/config", json={"allowedTools": "Bash"})
    assert response.status_code == 400
    assert "allowedTools" in response.json()["error"]["message"]


async def test_max_tokens_cap(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, max_tokens_cap="64")
    async with httpx.AsyncClient(base_url=server.url) as http:
        await http.post("/v1/messages", json={"model": "claude-x", "max_tokens": 32000,
                                              "messages": user("x")})
        await http.post("/v1/messages", json={"model": "claude-x", "max_tokens": 10,
                                              "messages": user("x")})
    assert [g.body["max_output_tokens"] for g in emulator.generations] == [64, 10]
    # a reply cut at the cap did not reach the client's limit: end_turn, not max_tokens
    emulator.script(Reply(Text("cut at the cap"), incomplete=True),
                    Reply(Text("cut at the client's own limit"), incomplete=True))
    async with httpx.AsyncClient(base_url=server.url) as http:
        capped = await http.post("/v1/messages", json={
            "model": "claude-x", "max_tokens": 32000, "messages": user("x")})
        own = await http.post("/v1/messages", json={
            "model": "claude-x", "max_tokens": 10, "messages": user("x")})
    assert capped.json()["stop_reason"] == "end_turn"
    assert own.json()["stop_reason"] == "max_tokens"


async def test_keys_and_auth_headers_never_reach_the_log(lmsd, emulator, caplog):
    caplog.set_level(logging.DEBUG, logger="lmsd")
    secret = "sk-ant-api03-VERY-SECRET-KEY"
    async with httpx.AsyncClient(base_url=lmsd.url) as http:
        await http.post("/v1/messages", headers={"x-api-key": secret,
                                                 "Authorization": f"Bearer {secret}"},
                        json={"model": "claude-x", "max_tokens": 5, "messages": user("x")})
    assert caplog.records and all(secret not in r.getMessage() and
                                  secret not in str(getattr(r, "lmsd_fields", ""))
                                  for r in caplog.records)


async def test_nothing_follows_message_stop_while_the_turn_is_stored(start_lmsd, emulator,
                                                                    monkeypatch):
    """Storing the finished turn can take longer than ping_interval (a slow disk, a busy
    machine): no ping may follow message_stop (seen once as a flaky test)."""
    server = await start_lmsd(emulator.url, ping_interval="0.05")
    slow_store = server.store.record_turn

    async def record_turn(*args, **kwargs):
        await trio.sleep(0.3)
        return await slow_store(*args, **kwargs)

    monkeypatch.setattr(server.store, "record_turn", record_turn)
    emulator.script(Reply(Text("stored slowly")))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        events = await raw_stream(http, {"model": "claude-x", "max_tokens": 10,
                                         "messages": user("hi")})
    assert check_stream(events, complete=True) == "complete"
    assert events[-1]["type"] == "message_stop"
