"""End to end: the official openai SDK -> lmsd's /v1/chat/completions -> the LM Studio
emulator (a /v1/responses upstream, so turns chain)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.emulator import (
    Call,
    Emulator,
    Fault,
    ModelSpec,
    Reasoning,
    Reply,
    Text,
    serve_emulator,
)

MODEL = "qwen/qwen3-coder-30b"  # the emulator's loaded model
BASH = {"type": "function", "function": {
    "name": "Bash", "description": "Run a command",
    "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}}


def user(text):
    return [{"role": "user", "content": text}]


@pytest.fixture
async def oai(lmsd):
    async with openai.AsyncOpenAI(base_url=f"{lmsd.url}/v1", api_key="x", max_retries=0,
                                  timeout=30) as c:
        yield c


async def collect(stream):
    """Fold a streamed completion as a client does: (content, tool calls, finish, usage,
    chunks)."""
    content, calls, finish, usage, chunks = "", {}, None, None, []
    async for chunk in stream:
        chunks.append(chunk)
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for call in choice.delta.tool_calls or ():
                slot = calls.setdefault(call.index, {"id": None, "name": None, "args": ""})
                slot["id"] = call.id or slot["id"]
                if call.function is not None:
                    slot["name"] = call.function.name or slot["name"]
                    slot["args"] += call.function.arguments or ""
            finish = choice.finish_reason or finish
    return content, [calls[i] for i in sorted(calls)], finish, usage, chunks


async def test_non_streamed_text(oai, emulator):
    emulator.script(Reply(Text("Hello from the local model.")))
    completion = await oai.chat.completions.create(model=MODEL, messages=user("hi"))
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == MODEL
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello from the local model."
    assert choice.finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == (completion.usage.prompt_tokens
                                             + completion.usage.completion_tokens)
    [record] = emulator.generations
    assert record.body["model"] == MODEL and record.body["stream"] is True


async def test_local_model_is_the_loaded_model_here_as_on_responses(oai, lmsd, emulator):
    """``local-model`` (what ``lmsd env --codex`` names with no model known) is one rule
    on both OpenAI fronts, not a 404 on chat."""
    emulator.script(Reply(Text("chat")), Reply(Text("responses")))
    completion = await oai.chat.completions.create(model="local-model", messages=user("hi"))
    assert completion.choices[0].message.content == "chat"
    response = await oai.responses.create(model="local-model", input="hi", store=False)
    assert response.output_text == "responses"
    assert [g.body["model"] for g in emulator.generations] == [MODEL, MODEL]


async def test_streamed_text_with_usage_and_one_id(oai, emulator):
    emulator.script(Reply(Text("Streaming works fine.")))
    stream = await oai.chat.completions.create(
        model=MODEL, messages=user("hi"), stream=True,
        stream_options={"include_usage": True})
    content, calls, finish, usage, chunks = await collect(stream)
    assert content == "Streaming works fine." and calls == [] and finish == "stop"
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" and c.model == MODEL for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and usage is not None
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details.reasoning_tokens == 0


async def test_the_raw_stream_ends_with_done(http, emulator):
    emulator.script(Reply(Text("ok")))
    response = await http.post("/v1/chat/completions", json={
        "model": MODEL, "messages": user("hi"), "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in response.text.split("\n\n") if f]
    assert all(f.startswith("data: ") for f in frames)
    assert frames[-1] == "data: [DONE]"
    first = json.loads(frames[0].removeprefix("data: "))
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    last = json.loads(frames[-2].removeprefix("data: "))
    assert last["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in last  # no include_usage: no usage chunk


async def test_tool_round_trip_chains_upstream(oai, emulator):
    emulator.script(Reply(Text("Running it."), Call("Bash", {"command": "echo hi"})),
                    Reply(Text("It printed hi.")))
    stream = await oai.chat.completions.create(model=MODEL, messages=user("say hi"),
                                               tools=[BASH], stream=True)
    content, calls, finish, _, _ = await collect(stream)
    assert finish == "tool_calls" and content == "Running it."
    [call] = calls
    assert call["name"] == "Bash" and json.loads(call["args"]) == {"command": "echo hi"}
    history = [*user("say hi"),
               {"role": "assistant", "content": content, "tool_calls": [
                   {"id": call["id"], "type": "function",
                    "function": {"name": "Bash", "arguments": call["args"]}}]},
               {"role": "tool", "tool_call_id": call["id"], "content": "hi\n"}]
    second = await oai.chat.completions.create(model=MODEL, messages=history, tools=[BASH])
    assert second.choices[0].message.content == "It printed hi."
    assert second.choices[0].finish_reason == "stop"
    first, turn2 = emulator.generations
    assert turn2.body["previous_response_id"] == first.response_id
    assert turn2.body["input"] == [{"type": "function_call_output", "call_id": call["id"],
                                    "output": "hi\n"}]


async def test_non_streamed_tool_calls(oai, emulator):
    emulator.script(Reply(Call("Bash", {"command": "a"}), Call("Bash", {"command": "b"})))
    completion = await oai.chat.completions.create(model=MODEL, messages=user("two"),
                                                   tools=[BASH], tool_choice="required")
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    assert [json.loads(c.function.arguments) for c in message.tool_calls] == [
        {"command": "a"}, {"command": "b"}]
    assert emulator.generations[0].body["tool_choice"] == "required"


async def test_a_text_only_conversation_chains_in_the_default_session(oai, emulator):
    emulator.script(Reply(Text("first")), Reply(Text("second")))
    messages = [{"role": "system", "content": "Be brief."}, *user("one")]
    first = await oai.chat.completions.create(model=MODEL, messages=messages)
    messages += [{"role": "assistant", "content": first.choices[0].message.content},
                 *user("two")]
    await oai.chat.completions.create(model=MODEL, messages=messages)
    one, two = emulator.generations
    assert one.body["instructions"] == "Be brief."
    assert two.body["previous_response_id"] == one.response_id
    assert two.body["input"] == [{"type": "message", "role": "user",
                                  "content": [{"type": "input_text", "text": "two"}]}]


async def test_finish_reason_length(oai, emulator):
    emulator.script(Reply(Text("cut"), incomplete=True))
    completion = await oai.chat.completions.create(model=MODEL, messages=user("x"),
                                                   max_completion_tokens=5)
    assert completion.choices[0].finish_reason == "length"
    assert emulator.generations[0].body["max_output_tokens"] == 5


async def test_reasoning_is_hidden_unless_asked_for(start_lmsd, emulator):
    for enabled in (False, True):
        server = await start_lmsd(emulator.url, chat_reasoning=str(enabled).lower())
        emulator.script(Reply(Reasoning("think"), Text("answer")))
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            response = await http.post("/v1/chat/completions", json={
                "model": MODEL, "messages": user("q"), "stream": True})
        deltas = [json.loads(f.removeprefix("data: "))["choices"][0]["delta"]
                  for f in response.text.split("\n\n")
                  if f.startswith("data: {") and '"choices":[{' in f]
        reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
        assert reasoning == ("think" if enabled else "")
        assert "".join(d.get("content") or "" for d in deltas) == "answer"


async def test_a_failure_mid_stream_raises_api_error(oai, emulator):
    emulator.inject(Fault.error_event(after_events=6, message="bad things"))
    emulator.script(Reply(Text("some words that will be cut off by the failure")))
    stream = await oai.chat.completions.create(model=MODEL, messages=user("x"), stream=True)
    with pytest.raises(openai.APIError) as caught:
        await collect(stream)
    assert "bad things" in str(caught.value)


async def test_an_upstream_failure_without_stream_is_an_openai_error(oai, emulator):
    emulator.inject(Fault.http(500, "engine exploded"))
    with pytest.raises(openai.APIStatusError) as caught:
        await oai.chat.completions.create(model=MODEL, messages=user("x"))
    assert caught.value.status_code == 502
    assert "engine exploded" in caught.value.body["message"]


async def test_overflow_is_refused_before_sending(start_lmsd, emulator):
    emulator.models[MODEL].context_length = 400
    server = await start_lmsd(emulator.url)
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x",
                                  max_retries=0) as oai:
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as caught:
                await oai.chat.completions.create(
                    model=MODEL, messages=user(" ".join(["abc"] * 1500)), stream=stream)
            assert caught.value.code == "context_length_exceeded"
            assert "maximum context length is 400 tokens" in caught.value.message
    assert emulator.generations == []
    events = [e for e in server.bus.recent if e["type"] == "request.too_long"]
    assert events and events[0]["front"] == "openai_chat"


async def test_an_engine_overflow_is_context_length_exceeded(oai, emulator):
    emulator.models[MODEL].context_length = 400
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(model=MODEL, messages=user(" ".join(["abc"] * 500)))
    assert caught.value.code == "context_length_exceeded"


@pytest.mark.parametrize(("headers", "body", "session"), [
    ({"x-session-id": "s-header"}, {}, "s-header"),
    ({"x-session-affinity": "s-affinity"}, {"user": "u-1"}, "s-affinity"),
    ({}, {"prompt_cache_key": "pck-1", "user": "u-1"}, "pck-1"),
    ({}, {"user": "u-1"}, "u-1"),
    ({}, {}, "default"),
], ids=["x-session-id", "x-session-affinity", "prompt_cache_key", "user", "default"])
async def test_sessions_by_each_hint(lmsd, http, emulator, headers, body, session):
    response = await http.post("/v1/chat/completions", headers=headers, json={
        "model": MODEL, "messages": user("x"), **body})
    assert response.status_code == 200, response.text
    starts = [e for e in lmsd.bus.recent if e["type"] == "request.start"]
    assert starts[-1]["session"] == session and starts[-1]["front"] == "openai_chat"
    ends = [e for e in lmsd.bus.recent if e["type"] == "request.end"]
    assert ends[-1]["session"] == session and ends[-1]["front"] == "openai_chat"
    assert ends[-1]["request_id"] == starts[-1]["request_id"] == response.headers["request-id"]


async def test_a_user_that_is_no_session_id_is_digested(lmsd, http):
    response = await http.post("/v1/chat/completions", json={
        "model": MODEL, "messages": user("x"), "user": "alice@example.com"})
    assert response.status_code == 200
    start = [e for e in lmsd.bus.recent if e["type"] == "request.start"][-1]
    assert start["session"].startswith("chat-") and "@" not in start["session"]


async def test_bad_input_is_an_openai_400(oai):
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(model=MODEL, messages=user("x"), n=2)
    assert "n: only one choice" in caught.value.message
    assert caught.value.body["type"] == "invalid_request_error"


async def test_the_models_list_parses_in_both_sdks(lmsd, oai):
    import anthropic

    models = [m async for m in oai.models.list()]
    ids = [m.id for m in models]
    assert MODEL in ids and "claude-sonnet-4-6" in ids
    assert all(m.object == "model" and m.owned_by and isinstance(m.created, int)
               for m in models)
    async with anthropic.AsyncAnthropic(base_url=lmsd.url, api_key="x",
                                        max_retries=0) as client:
        page = await client.models.list(limit=100)
        assert MODEL in [m.id for m in page.data]
        assert all(m.type == "model" for m in page.data)


async def test_a_session_header_chains_within_its_session(oai, emulator):
    emulator.script(Reply(Text("a")), Reply(Text("b")))
    headers = {"x-session-id": "agent-7"}
    first = await oai.chat.completions.create(model=MODEL, messages=user("one"),
                                              extra_headers=headers)
    history = [*user("one"), {"role": "assistant",
                              "content": first.choices[0].message.content}, *user("two")]
    await oai.chat.completions.create(model=MODEL, messages=history, extra_headers=headers)
    one, two = emulator.generations
    assert two.body["previous_response_id"] == one.response_id
    assert len(two.body["input"]) == 1


async def test_pings_are_sse_comments_while_the_upstream_is_silent(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, ping_interval="0.05")
    emulator.inject(Fault.slow_first_byte(0.6))
    emulator.script(Reply(Text("late")))
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x",
                                  max_retries=0) as oai:
        stream = await oai.chat.completions.create(model=MODEL, messages=user("x"),
                                                   stream=True)
        content, *_ = await collect(stream)
    assert content == "late"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        emulator.inject(Fault.slow_first_byte(0.6))
        response = await http.post("/v1/chat/completions", json={
            "model": MODEL, "messages": user("x"), "stream": True})
    assert response.text.count(": ping\n\n") >= 2


async def test_a_chat_completions_upstream_serves_it_too(start_lmsd, emulator):
    """Through a stateless chat upstream: the whole history every turn."""
    server = await start_lmsd(emulator.url, upstream_api="chat")
    emulator.script(Reply(Call("Bash", {"command": "pwd"})), Reply(Text("in /tmp")))
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x",
                                  max_retries=0) as oai:
        first = await oai.chat.completions.create(model=MODEL, messages=user("where"),
                                                  tools=[BASH])
        [call] = first.choices[0].message.tool_calls
        stream = await oai.chat.completions.create(
            model=MODEL, tools=[BASH], stream=True, stream_options={"include_usage": True},
            messages=[*user("where"), first.choices[0].message.model_dump(exclude_none=True),
                      {"role": "tool", "tool_call_id": call.id, "content": "/tmp"}])
        content, _, finish, usage, _ = await collect(stream)
    assert (content, finish) == ("in /tmp", "stop") and usage.prompt_tokens > 0
    chats = [r for r in emulator.log if r.path == "/v1/chat/completions"]
    assert len(chats) == 2 and [m["role"] for m in chats[1].body["messages"]] == [
        "user", "assistant", "tool"]


async def test_openai_clients_get_every_model_anthropic_ones_a_page(start_lmsd, nursery):
    import anthropic

    emu = Emulator([ModelSpec(f"org/model-{i:02}") for i in range(30)])
    server = await start_lmsd(await serve_emulator(nursery, emu))
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x",
                                  max_retries=0) as oai:
        ids = [m.id async for m in oai.models.list()]
    assert len(ids) == 36 and ids[-1] == "org/model-29"  # 6 Claude aliases, 30 models
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="x",
                                        max_retries=0) as client:
        page = await client.models.list()
    assert len(page.data) == 20 and page.has_more


async def test_max_tokens_cap_applies_and_a_cut_there_is_a_stop(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, max_tokens_cap="10")
    emulator.script(Reply(Text("long"), incomplete=True))
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x",
                                  max_retries=0) as oai:
        completion = await oai.chat.completions.create(model=MODEL, messages=user("x"),
                                                       max_tokens=100)
    assert emulator.generations[0].body["max_output_tokens"] == 10
    assert completion.choices[0].finish_reason == "stop"  # not the client's own limit
