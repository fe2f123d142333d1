"""lmsd over llama-server's own ``/v1/messages`` (the messages dialect, which ``auto``
picks for it), on the tiny random model: its real event grammar, usage, prefix cache,
tool calls, count_tokens and overflow. The output is gibberish; what is checked is
everything around it. Needs the llama-server harness (``tests/engine/llama_server.py``,
issue 14's CI build); skipped without it."""

from __future__ import annotations

import httpx
import pytest

pytest.importorskip("tests.engine.llama_server")

import anthropic
import openai

from tests.engine.llama_server import start_llama_server
from tests.engine.server import MODEL_ALIAS
from tests.support.anthropic_checks import check_stream, parse_sse

pytestmark = pytest.mark.engine
BASH = {"name": "Bash", "description": "Run a command", "input_schema": {
    "type": "object", "properties": {"command": {"type": "string", "enum": ["ls", "pwd"]}},
    "required": ["command"], "additionalProperties": False}}
SESSION = {"X-Claude-Code-Session-Id": "llama-messages"}


def user(text):
    return [{"role": "user", "content": text}]


def anthropic_client(server):
    return anthropic.AsyncAnthropic(base_url=server.url, api_key="x", max_retries=0,
                                    timeout=300)


async def test_auto_speaks_messages_and_the_cache_hits_turn_after_turn(nursery, start_lmsd):
    llama = await start_llama_server(nursery, forced_tool_calls=True)
    server = await start_lmsd(llama.url, model=MODEL_ALIAS)
    dialect = await server.router.backends[0].dialect()
    assert dialect.name == "messages" and "count_tokens" in dialect.why
    history = user("list files")
    cached = []
    async with anthropic_client(server) as client:
        for _ in range(3):
            async with client.messages.stream(
                    model="claude-sonnet-4-6", max_tokens=64, messages=history, tools=[BASH],
                    tool_choice={"type": "any"}, extra_headers=SESSION) as stream:
                msg = await stream.get_final_message()
            [call] = [b for b in msg.content if b.type == "tool_use"]
            assert msg.stop_reason == "tool_use" and call.input["command"] in ("ls", "pwd")
            assert not call.id.startswith("call_lmsd_")  # the engine's own id
            cached.append(msg.usage.cache_read_input_tokens)
            history += [{"role": "assistant", "content": [b.model_dump() for b in msg.content]},
                        {"role": "user", "content": [
                            {"type": "tool_result", "tool_use_id": call.id, "content": "a b"},
                            {"type": "text", "text": "<system-reminder>ok</system-reminder>"}]}]
    # prefix-stable: each turn reads the whole previous prompt from the engine's cache
    assert cached[0] == 0 and cached[1] > 0 and cached[2] > cached[1]
    # and each turn says what the engine prefilled (its uncached input_tokens) and held
    ends = [e for e in server.bus.recent if e["type"] == "request.end"]
    assert [e["cached_tokens"] for e in ends] == cached
    assert ends[1]["prefilled_tokens"] < ends[0]["prefilled_tokens"] / 2
    assert all("prefill_ms" not in e for e in ends)  # its /v1/messages has no timings
    async with httpx.AsyncClient(base_url=server.admin_url) as http:
        [agent] = (await http.get("/sessions/llama-messages")).json()["agents"]
    assert agent["cached_tokens"] == sum(cached)
    assert agent["prefilled_tokens"] == sum(e["prefilled_tokens"] for e in ends)
    assert agent["last_turn"]["cached_tokens"] == cached[2]


async def test_count_tokens_comes_from_the_engine(nursery, start_lmsd):
    llama = await start_llama_server(nursery)
    server = await start_lmsd(llama.url, model=MODEL_ALIAS)
    request = {"model": "claude-x", "messages": user("def main():\n    print('hi')\n")}
    async with httpx.AsyncClient() as http:
        counted = (await http.post(f"{server.url}/v1/messages/count_tokens",
                                   json=request)).json()["input_tokens"]
        direct = (await http.post(f"{llama.url}/v1/messages/count_tokens", json={
            "model": MODEL_ALIAS, "messages": [{"role": "user", "content": [
                {"type": "text", "text": "def main():\n    print('hi')\n"}]}]})).json()
    assert counted == direct["input_tokens"] > 0


@pytest.mark.parametrize("stream", [False, True])
async def test_an_overflow_is_prompt_too_long_with_the_engines_numbers(nursery, start_lmsd,
                                                                       stream):
    llama = await start_llama_server(nursery, n_ctx=512)
    server = await start_lmsd(llama.url, model=MODEL_ALIAS)
    async with httpx.AsyncClient(base_url=server.url, timeout=300) as http:
        answer = await http.post("/v1/messages", json={
            "model": "claude-x", "max_tokens": 8, "stream": stream,
            "messages": user("word " * 700)})
    if stream:  # lmsd's message_start went out before llama-server's HTTP 400 came
        assert answer.status_code == 200
        events = parse_sse(answer.content)
        assert check_stream(events) == "error"
        message = events[-1]["error"]["message"]
    else:
        assert answer.status_code == 400
        message = answer.json()["error"]["message"]
    assert message.startswith("prompt is too long: ") and message.endswith(" > 512 maximum")
    assert server.router.backends[0].context_limit(MODEL_ALIAS) == 512


async def test_codex_and_chat_clients_over_messages(nursery, start_lmsd):
    llama = await start_llama_server(nursery, forced_tool_calls=True)
    server = await start_lmsd(llama.url, model=MODEL_ALIAS)
    tools = [{"type": "function", "name": "exec_command", "parameters": {
        "type": "object", "properties": {"cmd": {"type": "string", "enum": ["ls"]}},
        "required": ["cmd"]}}]
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0,
                                  timeout=300) as client:
        items: list = [{"role": "user", "content": "list"}]
        for _ in range(2):
            response = await client.responses.create(
                model=MODEL_ALIAS, input=items, tools=tools, tool_choice="required",
                store=False)
            [call] = [i for i in response.output if i.type == "function_call"]
            assert call.name == "exec_command" and '"ls"' in call.arguments
            items += [call.model_dump(exclude_none=True),
                      {"type": "function_call_output", "call_id": call.call_id,
                       "output": "a.txt"}]
        assert response.usage.input_tokens_details.cached_tokens > 0
        chat = await client.chat.completions.create(
            model=MODEL_ALIAS, max_tokens=8, messages=user("hi"))
        assert chat.usage.prompt_tokens > 0
