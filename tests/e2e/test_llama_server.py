"""lmsd in front of llama.cpp's own ``llama-server`` (the engine most local users run) on
a tiny random model: real prefill, decoding, KV cache, grammar and protocol quirks. The
output is gibberish; what is checked is everything around it. Here: plain text, the
prefix cache, a client that goes away, an engine that dies, a real Claude Code turn
(fixtures: tests/e2e/conftest.py; overflow, tools and /v1/responses have files of their
own)."""

from __future__ import annotations

import anthropic
import httpx
import pytest
import trio

from lmsd.protocol.tokens import count_text
from tests.engine.server import MODEL_ALIAS
from tests.support.claude_cli import run_claude
from tests.support.llama_e2e import (
    engine_prompt_tokens,
    openai_client,
    system,
    user,
)

pytestmark = pytest.mark.engine

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
