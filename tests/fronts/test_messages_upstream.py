"""The Messages dialect end to end: the anthropic and openai SDKs -> lmsd -> the emulator's
own /v1/messages, speaking as llama-server (the default) or as an Anthropic-grammar server
(vLLM, Ollama). lmsd decides the dialect itself (``upstream_api = "auto"``)."""

from __future__ import annotations

import itertools
import json

import anthropic
import httpx
import openai
import pytest

from tests.emulator import Call, Emulator, Fault, PrintedCall, Reasoning, Reply, Text
from tests.emulator.overflow import BUDGET, MORE_WORDINGS, WORDINGS
from tests.support.anthropic_checks import check_stream, parse_sse
from tests.support.conversation import Conversation, tool_turns
from tests.support.overflow_cases import sample, values

MODEL = "qwen/qwen3-coder-30b"  # the emulator's loaded model
SCHEMA = {"type": "object", "properties": {"command": {"type": "string"}},
          "required": ["command"]}
BASH = {"name": "Bash", "description": "Run a command", "input_schema": SCHEMA}
CHAT_BASH = {"type": "function", "function": {"name": "Bash", "description": "Run a command",
                                              "parameters": SCHEMA}}
EXEC = {"type": "function", "name": "exec_command", "description": "Run a command",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}
FLAVORS = ["llama_server", "anthropic"]
CONTEXT = 400
SESSION = {"X-Claude-Code-Session-Id": "sess-m"}


def words(n: int) -> str:
    return " ".join(["abc"] * n)


def like_llama_server(emulator: Emulator, flavor: str = "llama_server") -> Emulator:
    emulator.lmstudio_api = False  # no LM Studio greeting, no /api/*
    emulator.messages_flavor = flavor  # type: ignore[assignment]
    return emulator


@pytest.fixture(params=FLAVORS)
async def server(request, start_lmsd, emulator):
    like_llama_server(emulator, request.param)
    return await start_lmsd(emulator.url)


@pytest.fixture
async def client(server):
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="x",
                                        max_retries=0) as c:
        yield c


@pytest.fixture
async def oai(server):
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0,
                                  timeout=30) as c:
        yield c


async def test_auto_decides_messages_and_status_says_why(server, emulator):
    dialect = await server.router.backends[0].dialect()
    assert dialect.name == "messages" and dialect.counts_tokens
    async with httpx.AsyncClient(base_url=server.admin_url) as admin:
        upstream = (await admin.get("/status")).json()["upstream"]
    assert upstream["api"] == "messages" and "/v1/messages" in upstream["api_why"]


async def test_text_thinking_and_a_tool_call(client, emulator):
    emulator.script(Reply(Reasoning("plan it"), Text("Running."), Call("Bash",
                                                                       {"command": "ls"})))
    async with client.messages.stream(
            model="claude-sonnet-4-6", max_tokens=100, tools=[BASH], extra_headers=SESSION,
            system=[{"type": "text", "text": "x-anthropic-billing-header: cc_version=1;"},
                    {"type": "text", "text": "You are local."}],
            messages=[{"role": "user", "content": "go"}]) as stream:
        msg = await stream.get_final_message()
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
    assert msg.content[0].thinking == "plan it" and msg.content[0].signature
    assert msg.content[1].text == "Running."
    assert msg.content[2].input == {"command": "ls"} and msg.stop_reason == "tool_use"
    [sent] = emulator.messages
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.body == {
        "model": MODEL, "system": "You are local.",  # mapped; the billing header stripped
        "messages": [{"role": "user", "content": [{"type": "text", "text": "go"}]}],
        "tools": [BASH], "max_tokens": 100, "metadata": {"user_id": "sess-m"},
        "stream": True}


async def test_a_tool_loop_is_stateless_prefix_stable_and_counted(client, emulator, server):
    emulator.script(*tool_turns(3), Reply(Text("end")))
    chat = Conversation(client, session="loop-1")
    for turn in range(4):
        msg = await chat.send("start" if turn == 0 else None)
    assert msg.content[-1].text == "end"
    bodies = [r.body for r in emulator.messages]
    for before, after in itertools.pairwise(bodies):
        assert json.dumps(after["messages"]).startswith(json.dumps(before["messages"])[:-1])
    result = bodies[1]["messages"][-1]["content"][0]
    assert result == {"type": "tool_result", "tool_use_id": bodies[1]["messages"][1][
        "content"][-1]["id"], "content": "output of echo 0"}
    # the engine's cache is read on every turn after the first, and lmsd reports the
    # whole context (cached included)
    assert all(r.cached_tokens > 0 for r in emulator.messages[1:])
    assert msg.usage.cache_read_input_tokens == emulator.messages[-1].cached_tokens
    assert msg.usage.input_tokens + msg.usage.cache_read_input_tokens == \
        emulator.messages[-1].input_tokens
    # a stateless upstream's turns are whole by design: not misses; what matters there
    # is how much of each prompt the engine's prefix cache held
    [stats] = server.store.stats.values()
    assert stats.misses == {} and stats.unchained_turns == 4 and stats.turns == 4
    async with httpx.AsyncClient(base_url=server.admin_url) as admin:
        sessions = (await admin.get("/sessions")).json()["sessions"]
        metrics = (await admin.get("/metrics")).text
    [session] = [s for s in sessions if s["session"] == "loop-1"]
    [agent] = session["agents"]
    assert agent["turns"] == 4 and agent["unchained_turns"] == 4 and agent["misses"] == {}
    cached = sum(r.cached_tokens for r in emulator.messages)
    prompt = sum(r.input_tokens for r in emulator.messages)
    assert agent["cached_tokens"] == cached and agent["measured_prompt_tokens"] == prompt
    assert agent["cached_percent"] == round(100 * cached / prompt) > 0
    assert 'lmsd_chain_decisions_total{front="anthropic",result="unchained"} 4.0' in metrics
    assert "miss_" not in metrics
    assert 'lmsd_requests_total{front="anthropic",outcome="ok",stream="True"} 4.0' in metrics
    ends = [e for e in server.bus.recent if e["type"] == "request.end"]
    assert len(ends) == 4 and all(e["outcome"] == "ok" and e["upstream_model"] == MODEL
                                  for e in ends)


async def test_max_tokens_and_a_whole_answer(client, emulator):
    emulator.script(Reply(Text("cut off"), incomplete=True))
    msg = await client.messages.create(model="claude-x", max_tokens=5,
                                       messages=[{"role": "user", "content": "go"}])
    assert msg.content[0].text == "cut off" and msg.stop_reason == "max_tokens"


async def test_a_printed_call_is_repaired(client, emulator, server):
    emulator.script(Reply(PrintedCall("qwen_xml", "Bash", {"command": "ls"},
                                      before="Let me look.\n")))
    async with client.messages.stream(model="claude-x", max_tokens=100, tools=[BASH],
                                      messages=[{"role": "user", "content": "ls"}]) as stream:
        msg = await stream.get_final_message()
    text, call = msg.content
    assert text.text.strip() == "Let me look." and call.input == {"command": "ls"}
    assert msg.stop_reason == "tool_use"
    [event] = [e for e in server.bus.recent if e["type"] == "tool_call.repaired"]
    assert event["format"] == "qwen_xml" and event["front"] == "anthropic"


async def test_count_tokens_is_answered_by_the_engine(server, emulator):
    request = {"model": "claude-x", "system": "be brief", "tools": [BASH],
               "messages": [{"role": "user", "content": "count me " * 20}]}
    async with httpx.AsyncClient(base_url=server.url) as http:
        counted = (await http.post("/v1/messages/count_tokens", json=request)).json()
    asked = [r for r in emulator.log if r.path == "/v1/messages/count_tokens"][-1]
    assert asked.body["model"] == MODEL and asked.outcome == "completed"
    assert counted == {"input_tokens": asked.input_tokens}
    text = asked.body["messages"][0]["content"][0]["text"]
    assert "be brief" in text and "count me" in text and '"Bash"' in text


async def test_a_server_without_count_tokens_falls_back_to_the_estimate(start_lmsd,
                                                                       emulator):
    server = await start_lmsd(like_llama_server(emulator, "ollama").url)
    request = {"model": "claude-x", "messages": [{"role": "user", "content": "hi there"}]}
    async with httpx.AsyncClient(base_url=server.url) as http:
        counted = (await http.post("/v1/messages/count_tokens", json=request)).json()
    assert counted["input_tokens"] > 0
    assert (await server.router.backends[0].dialect()).name == "messages"


async def test_a_close_call_is_settled_by_the_engines_count(start_lmsd, emulator):
    """Once an overflow taught lmsd the limit, a prompt near it is counted by the engine
    before sending: one that fits goes, one that does not is refused without a prefill."""
    like_llama_server(emulator).models[MODEL].context_length = CONTEXT
    server = await start_lmsd(emulator.url)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        body = {"model": "claude-x", "max_tokens": 20}
        first = await http.post("/v1/messages", json={
            **body, "messages": [{"role": "user", "content": words(CONTEXT + 50)}]})
        assert first.status_code == 400 and len(emulator.messages) == 1
        again = await http.post("/v1/messages", json={
            **body, "messages": [{"role": "user", "content": words(CONTEXT + 50)}]})
        assert again.status_code == 400 and len(emulator.messages) == 1  # not sent
    probe, counted = [r for r in emulator.log if r.path == "/v1/messages/count_tokens"]
    assert probe.body["messages"][0]["content"][0]["text"] == "ping"  # decide's
    assert counted.body["model"] == MODEL and counted.input_tokens > CONTEXT
    assert counted.body["messages"][0]["content"][0]["text"].startswith("abc abc")
    [refused] = [e for e in server.bus.recent if e["type"] == "request.too_long"]
    assert refused["counted_tokens"] == counted.input_tokens


#: Every wording once, each transport plain and streamed (every wording in every transport,
#: without HTTP: tests/protocol/test_overflow_matrix.py).
MESSAGES_OVERFLOWS = sample(
    ("lmstudio", "http400", False), ("lmstudio_n_keep", "http400", True),
    ("lmstudio_0425", "http500", False), ("llama_server", "http500", True),
    ("llama_server", "stream_error", False), ("openai", "stream_error", False),
    ("vllm", "stream_error", True), ("anthropic", "http400", True),
    ("vllm_budget", "http400", False), ("vllm_decoder", "stream_error", True),
    ("sglang_budget", "http500", True))
#: Each transport once for the OpenAI clients, llama-server's shape and a budget among them.
OPENAI_OVERFLOWS = sample(("llama_server", "http400"), ("vllm_budget", "http500"),
                          ("lmstudio", "stream_error"), ("llama_server", "stream_error"))


def test_the_samples_cover_every_wording_and_transport():
    modes = {"http400", "http500", "stream_error"}
    assert {w for w, _, _ in values(MESSAGES_OVERFLOWS)} == set(WORDINGS + MORE_WORDINGS)
    assert {(m, s) for _, m, s in values(MESSAGES_OVERFLOWS)} == {
        (m, s) for m in modes for s in (False, True)}
    assert {m for _, m in values(OPENAI_OVERFLOWS)} == modes


@pytest.mark.parametrize(("wording", "mode", "stream"), MESSAGES_OVERFLOWS)
async def test_overflow_in_every_wording(start_lmsd, emulator, wording, mode, stream):
    """Before the stream (an HTTP error) and inside it (an ``error`` event), every engine's
    words end as the one error Claude Code compacts on."""
    like_llama_server(emulator, "llama_server" if wording == "llama_server" else "anthropic")
    emulator.overflow_wording, emulator.overflow_mode = wording, mode  # type: ignore[assignment]
    emulator.models[MODEL].context_length = CONTEXT
    server = await start_lmsd(emulator.url)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        response = await http.post("/v1/messages", headers=SESSION, json={
            "model": "claude-x", "max_tokens": 50, "stream": stream,
            "messages": [{"role": "user", "content": words(CONTEXT + 20)}]})
    if stream:
        assert response.status_code == 200
        events = parse_sse(response.content)
        assert check_stream(events) == "error"
        error = events[-1]["error"]
    else:
        assert response.status_code == 400, response.text
        error = response.json()["error"]
    [gen] = emulator.messages  # one attempt: never retried
    limit = CONTEXT - 50 if wording in BUDGET else CONTEXT
    assert error == {"type": "invalid_request_error",
                     "message": f"prompt is too long: {gen.input_tokens} tokens > {limit} "
                                "maximum"}
    assert server.router.backends[0].context_limit(MODEL) == limit  # the engine said


@pytest.mark.parametrize(("wording", "mode"), OPENAI_OVERFLOWS)
async def test_overflow_reaches_openai_clients_as_context_length_exceeded(
        start_lmsd, emulator, wording, mode):
    """The chat front (before the stream, a 400) and Codex's (inside it, response.failed)."""
    like_llama_server(emulator, "llama_server" if wording == "llama_server" else "anthropic")
    emulator.overflow_wording, emulator.overflow_mode = wording, mode  # type: ignore[assignment]
    emulator.models[MODEL].context_length = CONTEXT
    chat, codex = await start_lmsd(emulator.url), await start_lmsd(emulator.url)
    async with openai.AsyncOpenAI(base_url=f"{chat.url}/v1", api_key="x",
                                  max_retries=0) as oai:
        with pytest.raises(openai.BadRequestError) as info:
            await oai.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": words(CONTEXT + 20)}])
        assert info.value.code == "context_length_exceeded"
    async with openai.AsyncOpenAI(base_url=f"{codex.url}/v1", api_key="x",
                                  max_retries=0) as oai:
        stream = await oai.responses.create(model=MODEL, input=words(CONTEXT + 20),
                                            stream=True)
        events = [e async for e in stream]
    assert events[-1].type == "response.failed"
    assert events[-1].response.error.code == "context_length_exceeded"
    assert len(emulator.messages) == 2  # each reached the engine once


async def test_errors_mid_stream_and_a_cut_stream(client, emulator):
    emulator.inject(Fault.error_event(after_events=3, message="Model crashed"),
                    Fault.drop(after_events=3))
    emulator.script(Reply(Text("hello there, a longer text")), Reply(Text("again, longer")))
    for expected in ("Model crashed", "the connection to the upstream server failed"):
        with pytest.raises(anthropic.APIStatusError) as info:
            async with client.messages.stream(
                    model="claude-x", max_tokens=50,
                    messages=[{"role": "user", "content": "go"}]) as stream:
                await stream.get_final_message()
        assert expected in str(info.value)


async def test_openai_chat_front_over_messages(oai, emulator):
    emulator.script(Reply(Text("Let me run it."), Call("Bash", {"command": "ls"})),
                    Reply(Text("Two files.")), Reply(PrintedCall("hermes_json", "Bash",
                                                                 {"command": "pwd"})))
    messages = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": "list files"}]
    first = await oai.chat.completions.create(model=MODEL, messages=messages,
                                              tools=[CHAT_BASH])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me run it."
    [call] = choice.message.tool_calls
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "a b"}]
    stream = await oai.chat.completions.create(model=MODEL, messages=messages,
                                               tools=[CHAT_BASH], stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Two files."
    sent = emulator.messages[1].body
    assert sent["system"] == "be brief"
    assert sent["messages"][1]["content"][-1] == {
        "type": "tool_use", "id": call.id, "name": "Bash", "input": {"command": "ls"}}
    assert sent["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": call.id, "content": "a b"}]
    repaired = await oai.chat.completions.create(model=MODEL, messages=messages,
                                                 tools=[CHAT_BASH])
    [call] = repaired.choices[0].message.tool_calls
    assert json.loads(call.function.arguments) == {"command": "pwd"}


async def test_openai_responses_front_over_messages(server, emulator):
    """Codex's shape: the whole history each turn, function calls and their outputs."""
    emulator.script(Reply(Reasoning("hm"), Call("exec_command", {"cmd": "ls"})),
                    Reply(Text("Done.")),
                    Reply(PrintedCall("qwen_xml", "exec_command", {"cmd": "pwd"})))
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x",
                                  max_retries=0) as oai:
        first = await oai.responses.create(
            model=MODEL, instructions="You are Codex.", tools=[EXEC], store=False,
            input=[{"role": "user", "content": "list"}])
        call = next(i for i in first.output if i.type == "function_call")
        assert call.name == "exec_command" and json.loads(call.arguments) == {"cmd": "ls"}
        stream = await oai.responses.create(
            model=MODEL, instructions="You are Codex.", tools=[EXEC], store=False,
            stream=True, input=[{"role": "user", "content": "list"},
                                {"type": "function_call", "call_id": call.call_id,
                                 "name": "exec_command", "arguments": call.arguments},
                                {"type": "function_call_output", "call_id": call.call_id,
                                 "output": "a.txt"}])
        events = [e async for e in stream]
        repaired = await oai.responses.create(
            model=MODEL, tools=[EXEC], store=False, input=[{"role": "user", "content": "pwd"}])
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "Done."
    [call_item] = [i for i in repaired.output if i.type == "function_call"]
    assert call_item.name == "exec_command" and json.loads(call_item.arguments) == {
        "cmd": "pwd"}
    sent = emulator.messages[1].body
    assert sent["system"] == "You are Codex." and "previous_response_id" not in sent
    assert sent["messages"][-1]["content"] == [
        {"type": "tool_result", "tool_use_id": call.call_id, "content": "a.txt"}]
    assert sent["tools"][0]["name"] == "exec_command"
