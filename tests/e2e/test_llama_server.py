"""lmsd in front of llama.cpp's own ``llama-server`` (the engine most local users run) on
a tiny random model: real prefill, decoding, KV cache, grammar and protocol quirks. The
output is gibberish; what is checked is everything around it."""

from __future__ import annotations

import json
import secrets

import anthropic
import httpx
import openai
import pytest
import trio

from lmsd.protocol.tokens import count_text
from tests.engine.llama_server import start_llama_server
from tests.engine.server import MODEL_ALIAS
from tests.support.claude_cli import run_claude

pytestmark = pytest.mark.engine
BASH = {"name": "Bash", "description": "Run a command", "input_schema": {
    "type": "object", "properties": {"command": {"type": "string", "enum": ["ls", "pwd"]}},
    "required": ["command"], "additionalProperties": False}}
CHAT_BASH = {"type": "function", "function": {
    "name": "Bash", "description": BASH["description"], "parameters": BASH["input_schema"]}}


def user(text):
    return [{"role": "user", "content": text}]


def system(note: str = "You are a local coding agent.") -> list[dict]:
    """Claude Code's system prompt: a billing header that changes on every request, then
    the stable instructions."""
    return [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.329.3d0; "
             f"cc_entrypoint=cli; cch={secrets.token_hex(3)};"}, {"type": "text", "text": note}]


@pytest.fixture
async def llama(nursery):
    return await start_llama_server(nursery)


@pytest.fixture
async def llama_lmsd(start_lmsd, llama):
    """lmsd on llama-server's Chat Completions (``auto`` picks its /v1/messages: that
    kind has its own tests, test_llama_server_messages.py)."""
    return await start_lmsd(llama.url, model=MODEL_ALIAS, upstream_api="chat")


@pytest.fixture
async def tool_llama(nursery):
    """A llama-server whose random model emits one valid call under ``required``."""
    return await start_llama_server(nursery, forced_tool_calls=True)


@pytest.fixture
async def claude_client(llama_lmsd):
    async with anthropic.AsyncAnthropic(base_url=llama_lmsd.url, api_key="x", max_retries=0,
                                        timeout=300) as client:
        yield client


def anthropic_client(server):
    return anthropic.AsyncAnthropic(base_url=server.url, api_key="x", max_retries=0,
                                    timeout=300)


def openai_client(server):
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0,
                              timeout=300)


async def engine_prompt_tokens(engine_url: str, chat_body: dict) -> int:
    """How many tokens llama-server's own template and tokenizer make of a chat body."""
    async with httpx.AsyncClient(base_url=engine_url, timeout=60) as http:
        prompt = (await http.post("/apply-template", json=chat_body)).json()["prompt"]
        tokens = (await http.post("/tokenize", json={"content": prompt,
                                                     "parse_special": True})).json()
    return len(tokens["tokens"])


# -- plain text: the chat dialect, real usage, the prefix cache ---------------------------------


async def test_text_with_the_engines_own_usage(claude_client, llama_lmsd, llama):
    async with claude_client.messages.stream(model="claude-sonnet-4-6", max_tokens=12,
                                             messages=user("hello there")) as stream:
        msg = await stream.get_final_message()
    assert msg.content[0].type == "text" and msg.content[0].text
    assert msg.stop_reason in ("max_tokens", "end_turn")
    # Usage is llama-server's, not an estimate: the prompt its template made of exactly
    # what lmsd sent, all of it new on a fresh engine.
    sent = {"model": MODEL_ALIAS, "messages": user("hello there")}
    assert msg.usage.input_tokens == await engine_prompt_tokens(llama.url, sent)
    assert msg.usage.cache_read_input_tokens == 0
    assert msg.usage.output_tokens == 12 or msg.stop_reason == "end_turn"
    async with httpx.AsyncClient(base_url=llama_lmsd.admin_url) as http:
        upstream = (await http.get("/status")).json()["upstream"]
    assert (upstream["api"], upstream["api_why"]) == ("chat", "configured (upstream_api)")


async def test_the_prefix_cache_hits_across_turns_and_billing_headers(claude_client):
    """Claude Code changes its billing header on every request: lmsd strips it and renders
    the history prefix-stable, so turn 2 is prefilled only from where it differs, and
    usage says how much the engine found cached."""
    history = user("def main():\n    print('hello world')\n" * 20)
    first = await claude_client.messages.create(model="claude-sonnet-4-6", max_tokens=8,
                                                system=system(), messages=history)
    assert first.usage.cache_read_input_tokens == 0  # a fresh engine
    history += [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
                {"role": "user", "content": "and now?"}]
    second = await claude_client.messages.create(model="claude-sonnet-4-6", max_tokens=8,
                                                 system=system(), messages=history)
    first_prompt = first.usage.input_tokens + first.usage.cache_read_input_tokens
    assert second.usage.cache_read_input_tokens >= first_prompt
    assert second.usage.input_tokens < 40  # only the new turn was prefilled


async def test_each_turn_says_what_the_engine_prefilled(claude_client, llama_lmsd, llama):
    """llama-server's ``timings`` reach ``request.end``, ``/sessions`` and the metrics: the
    first turn prefills the whole prompt, the second only what follows the cached prefix."""
    headers = {"X-Claude-Code-Session-Id": "prefill-real"}
    history = user("def main():\n    print('hello world')\n" * 20)
    first = await claude_client.messages.create(
        model="claude-sonnet-4-6", max_tokens=8, system=system(), messages=history,
        extra_headers=headers)
    history += [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
                {"role": "user", "content": "and now?"}]
    await claude_client.messages.create(model="claude-sonnet-4-6", max_tokens=8,
                                        system=system(), messages=history,
                                        extra_headers=headers)
    cold, warm = [e for e in llama_lmsd.bus.recent if e["type"] == "request.end"]
    assert cold["cached_tokens"] == 0
    assert cold["prefilled_tokens"] == first.usage.input_tokens > 100
    assert warm["cached_tokens"] >= cold["prefilled_tokens"]
    assert 0 < warm["prefilled_tokens"] < 40  # only the new turn
    assert isinstance(cold["prefill_ms"], float) and isinstance(warm["prefill_ms"], float)
    async with httpx.AsyncClient(base_url=llama_lmsd.admin_url) as http:
        [agent] = (await http.get("/sessions/prefill-real")).json()["agents"]
        metrics = (await http.get("/metrics")).text
    assert agent["prefilled_tokens"] == cold["prefilled_tokens"] + warm["prefilled_tokens"]
    assert agent["cached_tokens"] == warm["cached_tokens"]
    assert agent["last_turn"]["prefilled_tokens"] == warm["prefilled_tokens"]
    assert agent["last_turn"]["cached_tokens"] == warm["cached_tokens"]
    total = f'lmsd_prefilled_tokens_total{{upstream="{warm["upstream"]}"}} '
    assert f'{total}{float(agent["prefilled_tokens"])}' in metrics


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_clients_see_cached_tokens(llama_lmsd, stream):
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "count to three " * 30}]
    async with openai_client(llama_lmsd) as client:
        usages = []
        for _ in range(2):
            if stream:
                chunks = [c async for c in await client.chat.completions.create(
                    model="claude-sonnet-4-6", messages=messages, max_tokens=4, stream=True,
                    stream_options={"include_usage": True})]
                usages.append(chunks[-1].usage)
                assert "".join(c.choices[0].delta.content or "" for c in chunks
                               if c.choices)
            else:
                answer = await client.chat.completions.create(
                    model="claude-sonnet-4-6", messages=messages, max_tokens=4)
                usages.append(answer.usage)
                assert answer.choices[0].message.content
    cold, warm = usages
    assert cold.prompt_tokens_details.cached_tokens == 0
    assert cold.prompt_tokens == warm.prompt_tokens > 100
    # llama-server evaluates the last prompt token again, to sample from it.
    assert warm.prompt_tokens_details.cached_tokens == warm.prompt_tokens - 1


async def test_count_tokens_uses_the_engines_tokenizer(llama_lmsd, llama):
    messages = user("def main():\n    print('hello world')\n")
    async with httpx.AsyncClient() as http:
        counted = (await http.post(f"{llama_lmsd.url}/v1/messages/count_tokens", json={
            "model": "claude-x", "messages": messages})).json()["input_tokens"]
        direct = (await http.post(f"{llama.url}/tokenize", json={
            "content": count_text("", messages, None)})).json()["tokens"]
    assert counted == len(direct) > 0


# -- a client that goes away ---------------------------------------------------------------------


async def test_a_client_disconnect_cancels_generation(llama_lmsd, llama):
    payload = {"model": "claude-x", "max_tokens": 30000, "stream": True,
               "messages": user("write a very long story")}
    async with (
        httpx.AsyncClient(base_url=llama_lmsd.url, timeout=120) as http,
        http.stream("POST", "/v1/messages", json=payload) as response,
    ):
        async for chunk in response.aiter_raw():
            if b"text_delta" in chunk:
                break  # the client goes away mid-generation
    # 30000 tokens would keep the one slot busy for minutes; llama-server cancels the
    # task when lmsd closes its stream.
    async with httpx.AsyncClient(base_url=llama.url) as http:
        with trio.fail_after(60):
            while (await http.get("/slots")).json()[0]["is_processing"]:
                await trio.sleep(0.1)
            while "stop: cancel task" not in llama.log_tail(200):  # its log lags a little
                await trio.sleep(0.1)


# -- an engine that dies and comes back ----------------------------------------------------------


async def test_an_engine_killed_and_restarted_on_its_port(claude_client, llama):
    """While the engine is down Claude Code gets a 503 (it retries those for minutes); once
    it is back on the same port lmsd serves again at once, on fresh connections, and usage
    shows that the engine's cache went with it."""
    history = user("def main():\n    print('hello world')\n" * 10)
    before = await claude_client.messages.create(model="claude-sonnet-4-6", max_tokens=4,
                                                 messages=history)
    again = await claude_client.messages.create(model="claude-sonnet-4-6", max_tokens=4,
                                                messages=history)
    assert again.usage.cache_read_input_tokens > 0
    await llama.kill()
    with pytest.raises(anthropic.APIStatusError) as down:
        await claude_client.messages.create(model="claude-sonnet-4-6", max_tokens=4,
                                            messages=history)
    assert down.value.status_code == 503
    assert "not reachable" in down.value.body["error"]["message"]
    await llama.restart()
    after = await claude_client.messages.create(model="claude-sonnet-4-6", max_tokens=4,
                                                messages=history)
    assert after.usage.cache_read_input_tokens == 0  # a cold engine
    assert after.usage.input_tokens == before.usage.input_tokens
    assert llama.starts == 2


# -- context overflow ----------------------------------------------------------------------------


@pytest.fixture
async def small_lmsd(nursery, start_lmsd):
    engine = await start_llama_server(nursery, n_ctx=2048)
    return await start_lmsd(engine.url, model=MODEL_ALIAS)


# About 2.6k tokens: over the 2048 of context, but under the 1.5 x 2048 past which lmsd's
# own estimate would refuse it; only the engine's tokenizer can tell.
LONG = "lorem ipsum dolor sit amet " * 200


@pytest.mark.parametrize("stream", [False, True])
async def test_an_overflow_is_prompt_too_long_for_claude_code(small_lmsd, stream):
    """llama-server says ``exceed_context_size_error`` (HTTP 400, before any SSE), with
    the sizes: Claude Code gets them as its own words and compacts."""
    async with httpx.AsyncClient(base_url=small_lmsd.url, timeout=120) as http:
        response = await http.post("/v1/messages", json={
            "model": "claude-x", "max_tokens": 4, "stream": stream, "messages": user(LONG)})
        if stream:
            assert response.status_code == 200
            assert "event: error" in response.text
            message = next(json.loads(line[6:]) for line in response.text.splitlines()
                           if line.startswith("data: ") and '"error"' in line)
            message = message["error"]["message"]
        else:
            assert response.status_code == 400
            message = response.json()["error"]["message"]
        assert message.startswith("prompt is too long: ")
        assert message.endswith(" tokens > 2048 maximum")
        after = await http.post("/v1/messages", json={
            "model": "claude-x", "max_tokens": 4, "messages": user("hello")})
    assert after.status_code == 200, after.text


async def test_an_overflow_is_context_length_exceeded_for_openai_clients(small_lmsd):
    async with openai_client(small_lmsd) as client:
        with pytest.raises(openai.BadRequestError) as chat:
            await client.chat.completions.create(model="claude-x", max_tokens=4,
                                                 messages=user(LONG))
        with pytest.raises(openai.BadRequestError) as responses:
            await client.responses.create(model="claude-x", max_output_tokens=16,
                                          input=LONG)
    assert chat.value.code == responses.value.code == "context_length_exceeded"


async def test_the_limit_an_overflow_stated_refuses_the_next_one_before_sending(small_lmsd):
    async with httpx.AsyncClient(base_url=small_lmsd.url, timeout=120) as http:
        body = {"model": "claude-x", "max_tokens": 4, "messages": user(LONG)}
        with small_lmsd.bus.subscribe(types=("request.too_long",)) as sub:
            first = await http.post("/v1/messages", json=body)
            second = await http.post("/v1/messages", json=body)
            refused = await sub.next()
        async with httpx.AsyncClient(base_url=small_lmsd.admin_url) as admin:
            metrics = (await admin.get("/metrics")).text
    assert first.status_code == second.status_code == 400
    engine_count, lmsd_count = (int(r.json()["error"]["message"].split()[4]) for r in (first,
                                                                                     second))
    # lmsd counts with the engine's tokenizer, without the chat template's few tokens.
    assert engine_count - 16 <= lmsd_count <= engine_count
    assert second.json()["error"]["message"].endswith(" tokens > 2048 maximum")
    assert refused["type"] == "request.too_long"
    assert 'lmsd_context_overflows_total{front="anthropic",where="engine"} 1.0' in metrics
    assert 'lmsd_context_overflows_total{front="anthropic",where="before_sending"} 1.0' \
        in metrics


# -- tool calls ----------------------------------------------------------------------------------


async def test_a_tool_call_round_trip(start_lmsd, tool_llama):
    server = await start_lmsd(tool_llama.url, model=MODEL_ALIAS)
    history = user("list files")
    async with anthropic_client(server) as client:
        for _ in range(2):
            msg = await client.messages.create(
                model="claude-sonnet-4-6", max_tokens=64, messages=history, tools=[BASH],
                tool_choice={"type": "any"})
            [call] = [b for b in msg.content if b.type == "tool_use"]
            assert call.name == "Bash" and call.input["command"] in ("ls", "pwd")
            assert msg.stop_reason == "tool_use"
            # The engine's own id (llama-server's have no call_ prefix), echoed back.
            assert call.id and not call.id.startswith("call_lmsd_")
            history += [{"role": "assistant", "content": [b.model_dump() for b in msg.content]},
                        {"role": "user", "content": [{"type": "tool_result",
                                                      "tool_use_id": call.id,
                                                      "content": "a.txt b.txt"}]}]


async def test_a_streamed_tool_call_for_chat_clients(start_lmsd, tool_llama):
    server = await start_lmsd(tool_llama.url, model=MODEL_ALIAS)
    async with openai_client(server) as client:
        chunks = [c async for c in await client.chat.completions.create(
            model="claude-sonnet-4-6", max_tokens=64, messages=user("list files"),
            tools=[CHAT_BASH], tool_choice="required", stream=True)]
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert calls[0].id and calls[0].function.name == "Bash"
    arguments = json.loads("".join(tc.function.arguments or "" for tc in calls))
    assert arguments["command"] in ("ls", "pwd")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


async def test_a_named_tool_choice_forces_that_tool(start_lmsd, tool_llama):
    """llama-server reads ``tool_choice`` only as a string: the OpenAI object naming a
    function silently becomes ``auto`` (log: "Wrong type supplied for parameter
    'tool_choice'") and nothing is forced. lmsd knows llama-server (it answers /props) and
    sends ``"required"`` with only the named tool."""
    server = await start_lmsd(tool_llama.url, model=MODEL_ALIAS, upstream_api="chat")
    other = {**BASH, "name": "Other", "description": "Another tool"}
    async with anthropic_client(server) as client:
        msg = await client.messages.create(
            model="claude-sonnet-4-6", max_tokens=64, messages=user("list files"),
            tools=[other, BASH], tool_choice={"type": "tool", "name": "Bash"})
    [call] = [b for b in msg.content if b.type == "tool_use"]
    assert call.name == "Bash" and msg.stop_reason == "tool_use"


# -- llama-server's stateless /v1/responses ------------------------------------------------------


async def test_its_responses_api_refuses_chaining_and_lmsd_sends_full_history(
        start_lmsd, tool_llama):
    """With ``upstream_api = responses`` lmsd chains turn 2 with ``previous_response_id``;
    llama-server answers 400 ("does not support 'previous_response_id'"), lmsd resends the
    turn whole at once, says so once, and sends every later turn whole."""
    server = await start_lmsd(tool_llama.url, model=MODEL_ALIAS, upstream_api="responses")
    history = user("list files")
    headers = {"X-Claude-Code-Session-Id": "stateless"}
    async with anthropic_client(server) as client:
        with server.bus.subscribe(types=("upstream.chaining_unsupported", "chain")) as sub:
            for _ in range(3):
                async with client.messages.stream(
                        model="claude-sonnet-4-6", max_tokens=64, messages=history,
                        tools=[BASH], tool_choice={"type": "any"},
                        extra_headers=headers) as stream:
                    msg = await stream.get_final_message()
                [call] = [b for b in msg.content if b.type == "tool_use"]
                assert call.input["command"] in ("ls", "pwd")
                assert msg.stop_reason == "tool_use"
                history += [
                    {"role": "assistant", "content": [b.model_dump() for b in msg.content]},
                    {"role": "user", "content": [{"type": "tool_result",
                                                  "tool_use_id": call.id, "content": "ok"}]}]
            seen = [await sub.next() for _ in range(5)]
    assert [e["type"] for e in seen] == [
        "chain.decision", "chain.stale", "upstream.chaining_unsupported", "chain.decision",
        "chain.decision"]
    assert [e.get("chained") for e in seen if e["type"] == "chain.decision"] == [
        False, False, False]
    async with httpx.AsyncClient(base_url=server.admin_url) as http:
        status = (await http.get("/status")).json()["upstream"]
    assert status["api"] == "responses" and status["chaining"] is False


@pytest.mark.parametrize("stream", [False, True])
async def test_its_responses_api_at_the_output_limit_is_max_tokens(start_lmsd, llama,
                                                                   stream):
    """llama-server's /v1/responses says ``status: completed`` even when it stopped at
    ``max_output_tokens``; Claude Code must still be told ``max_tokens``."""
    server = await start_lmsd(llama.url, model=MODEL_ALIAS, upstream_api="responses")
    async with anthropic_client(server) as client:
        if stream:
            async with client.messages.stream(model="claude-sonnet-4-6", max_tokens=8,
                                              messages=user("hello there")) as answer:
                msg = await answer.get_final_message()
        else:
            msg = await client.messages.create(model="claude-sonnet-4-6", max_tokens=8,
                                               messages=user("hello there"))
    assert msg.usage.output_tokens == 8
    assert msg.stop_reason == "max_tokens"


async def test_codex_shaped_responses_through_its_responses_api(start_lmsd, llama):
    """lmsd's /v1/responses front to llama-server's /v1/responses: its events have no
    sequence_number or output_index, and it says ``completed`` at the output limit;
    lmsd's stream to the client has them all, and says ``incomplete``."""
    server = await start_lmsd(llama.url, model=MODEL_ALIAS, upstream_api="responses")
    async with openai_client(server) as client:
        events = [e async for e in await client.responses.create(
            model=MODEL_ALIAS, input="hello there", max_output_tokens=16, stream=True)]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = events[-1]
    assert done.type == "response.incomplete"
    assert done.response.incomplete_details.reason == "max_output_tokens"
    assert done.response.output_text
    assert done.response.usage.input_tokens > 0
    assert done.response.usage.output_tokens == 16


# -- a real coding agent -------------------------------------------------------------------------


@pytest.mark.cli
async def test_claude_code_plain_text_turn(start_lmsd, llama, tmp_path):
    server = await start_lmsd(llama.url, model=MODEL_ALIAS, max_tokens_cap="16")
    (tmp_path / "tmp").mkdir()
    run = await run_claude(server.url, "say hello", home=tmp_path / "home", cwd=tmp_path,
                           allowed_tools=[], extra_env={"TMPDIR": str(tmp_path / "tmp")},
                           timeout=300)
    assert run.returncode == 0, run.stderr + run.stdout
    assert run.result is not None and run.result.get("is_error") is False
    assert isinstance(run.result.get("result"), str)
