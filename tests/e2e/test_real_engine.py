"""lmsd in front of a real llama.cpp engine (llama-cpp-python) running a tiny random
model: real prefill, decoding, KV cache and protocol quirks. Output is gibberish."""

from __future__ import annotations

import anthropic
import httpx
import pytest
import trio

from tests.engine.server import MODEL_ALIAS, start_engine
from tests.support.claude_cli import run_claude

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
    async with engine_client.messages.stream(
            model="claude-sonnet-4-6", max_tokens=64, messages=user("list files"),
            tools=[BASH], tool_choice={"type": "tool", "name": "Bash"}) as stream:
        msg = await stream.get_final_message()
    [call] = [b for b in msg.content if b.type == "tool_use"]
    assert call.name == "Bash" and call.input["command"] in ("ls", "pwd")
    assert call.id  # the engine's call id, echoed back next turn
    assert msg.stop_reason == "tool_use"


async def test_a_client_disconnect_stops_generation(engine_lmsd):
    payload = {"model": "claude-x", "max_tokens": 4000, "stream": True,
               "messages": user("write a very long story")}
    async with (
        httpx.AsyncClient(base_url=engine_lmsd.url, timeout=120) as http,
        http.stream("POST", "/v1/messages", json=payload) as response,
    ):
        async for chunk in response.aiter_raw():
            if b"text_delta" in chunk:
                break  # the client goes away mid-generation
    # The engine serves one request at a time: had it kept generating 4000 tokens, this
    # one would queue behind it for over a minute.
    with trio.fail_after(30):
        async with httpx.AsyncClient(base_url=engine_lmsd.url, timeout=60) as http:
            answer = await http.post("/v1/messages", json={**payload, "stream": False,
                                                           "max_tokens": 4})
    assert answer.status_code == 200


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


@pytest.mark.cli
async def test_claude_code_plain_text_turn(start_lmsd, engine, tmp_path):
    server = await start_lmsd(engine, model=MODEL_ALIAS, max_tokens_cap="16")
    (tmp_path / "tmp").mkdir()
    run = await run_claude(server.url, "say hello", home=tmp_path / "home", cwd=tmp_path,
                           allowed_tools=[], extra_env={"TMPDIR": str(tmp_path / "tmp")},
                           timeout=300)
    assert run.returncode == 0, run.stderr + run.stdout
    assert run.result is not None and run.result.get("is_error") is False
    assert isinstance(run.result.get("result"), str)
