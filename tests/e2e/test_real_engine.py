"""lmsd in front of llama-cpp-python's server on a tiny random model: the quirks of that
engine (no usage chunk, tool-call chunks that repeat id and name, a named ``tool_choice``
as its only way to force a call, an empty 200 for an over-long streamed prompt, its own
tokenizer endpoint). lmsd's general behaviour against a real engine is tested on
llama.cpp's own server, in test_llama_server.py."""

from __future__ import annotations

import re

import anthropic
import httpx
import pytest
import trio

from tests.engine.server import MODEL_ALIAS, start_engine

pytestmark = pytest.mark.engine
BASH = {"name": "Bash", "description": "Run a command", "input_schema": {
    "type": "object", "properties": {"command": {"type": "string", "enum": ["ls", "pwd"]}},
    "required": ["command"], "additionalProperties": False}}


@pytest.fixture
async def engine(nursery):
    return await start_engine(nursery)


@pytest.fixture
async def engine_lmsd(start_lmsd, engine):
    return await start_lmsd(engine, model=MODEL_ALIAS)


@pytest.fixture
async def engine_client(engine_lmsd):
    async with anthropic.AsyncAnthropic(base_url=engine_lmsd.url, api_key="x",
                                        max_retries=0, timeout=300) as client:
        yield client


def user(text):
    return [{"role": "user", "content": text}]


async def test_text_through_the_sdk_stream_accumulator(engine_client, engine_lmsd):
    """llama-cpp-python sends no usage chunk, even when asked: lmsd's usage is its own
    estimate, never zero."""
    async with engine_client.messages.stream(model="claude-sonnet-4-6", max_tokens=12,
                                             messages=user("hello there")) as stream:
        msg = await stream.get_final_message()
    assert msg.content[0].type == "text" and msg.content[0].text
    assert msg.stop_reason in ("max_tokens", "end_turn")
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    async with httpx.AsyncClient(base_url=engine_lmsd.admin_url) as http:
        upstream = (await http.get("/status")).json()["upstream"]
    assert upstream["api"] == "chat"  # auto: not LM Studio


async def test_a_forced_tool_call(engine_client):
    """A named ``tool_choice`` is the one way to force a call on llama-cpp-python; its
    chunks repeat the id, type and name with every argument fragment."""
    async with engine_client.messages.stream(
            model="claude-sonnet-4-6", max_tokens=64, messages=user("list files"),
            tools=[BASH], tool_choice={"type": "tool", "name": "Bash"}) as stream:
        msg = await stream.get_final_message()
    [call] = [b for b in msg.content if b.type == "tool_use"]
    assert call.name == "Bash" and call.input["command"] in ("ls", "pwd")
    assert call.id  # the engine's call id, echoed back next turn
    assert msg.stop_reason == "tool_use"


@pytest.mark.parametrize("stream", [False, True])
async def test_an_over_long_prompt_is_prompt_too_long(engine_lmsd, stream):
    """Streamed, llama-cpp-python answers with an empty 200; lmsd still says why."""
    prompt = "lorem ipsum dolor sit amet " * 8000  # far beyond n_ctx 32768
    async with httpx.AsyncClient(base_url=engine_lmsd.url, timeout=120) as http:
        response = await http.post("/v1/messages", json={
            "model": "claude-x", "max_tokens": 4, "stream": stream, "messages": user(prompt)})
    if stream:
        assert response.status_code == 200
        assert "event: error" in response.text
        assert "prompt is too long: " in response.text
    else:
        assert response.status_code == 400
        assert response.json()["error"]["message"].startswith("prompt is too long: ")
    # The engine resets the connection that carried its empty stream; lmsd's next
    # request must not fail on it.
    async with httpx.AsyncClient(base_url=engine_lmsd.url, timeout=120) as http:
        after = await http.post("/v1/messages", json={
            "model": "claude-x", "max_tokens": 4, "messages": user("hello")})
    assert after.status_code == 200, after.text


async def test_count_tokens_uses_the_engines_tokenizer(engine_lmsd, engine):
    from lmsd.protocol.tokens import count_text

    messages = user("def main():\n    print('hello world')\n")
    async with httpx.AsyncClient() as http:
        counted = (await http.post(f"{engine_lmsd.url}/v1/messages/count_tokens", json={
            "model": "claude-x", "messages": messages})).json()["input_tokens"]
        direct = (await http.post(f"{engine}/extras/tokenize/count", json={
            "input": count_text("", messages, None)})).json()["count"]
    assert counted == direct > 0


async def test_a_turn_longer_than_the_poll_interval_comes_back_whole(start_lmsd, nursery,
                                                                     tmp_path):
    """llama-cpp-python with its default ``interrupt_requests``: any request that takes its
    lock (``GET /v1/models`` does) ends the answer it streams with a bare ``[DONE]``. lmsd
    polls every 0.5 s here and the turn (200 tokens) lasts several seconds: the answer
    still ends at the engine's own limit, and the engine served no listing meanwhile."""
    log = tmp_path / "engine.log"
    engine = await start_engine(nursery, interrupt_requests=True, log_path=log)
    server = await start_lmsd(engine, model=MODEL_ALIAS, poll_interval="0.5")
    backend = server.router.backends[0]
    while not backend.watcher.polls:
        await trio.sleep(0.05)
    client = anthropic.AsyncAnthropic(base_url=server.url, api_key="x", max_retries=0,
                                      timeout=300)
    async with client, client.messages.stream(
            model="claude-sonnet-4-6", max_tokens=200,
            messages=user("tell me a long story")) as stream:
        msg = await stream.get_final_message()
    # Before: a poll's GET /v1/models ended the answer after a few tokens, reported as
    # end_turn; the engine's log says so ("Disconnected from client").
    assert msg.stop_reason == "max_tokens", (msg.stop_reason, msg.content)
    assert msg.content and msg.content[0].type == "text" and msg.content[0].text
    engine_log = log.read_text(errors="replace")
    assert "Disconnected from client" not in engine_log
    # The engine's own account of the turn: 200 tokens (the first comes with the prompt's
    # evaluation), and nothing else served between the request and its end.
    turn = engine_log[engine_log.rindex('"POST /v1/chat/completions'):]
    turn = turn[:turn.index("total time")]
    assert re.search(r"eval time = .* /\s+199 runs", turn), turn
    assert "GET /v1/models" not in turn
    assert backend.watcher.busy_polls > 0  # polls fell due during the turn, none was sent
    kinds = {e["type"] for e in server.bus.recent}
    assert not {"upstream.down", "upstream.out", "cache.lost"} & kinds
