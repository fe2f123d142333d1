"""The Chat Completions dialect end to end: anthropic SDK -> lmsd -> the emulator's
/v1/chat/completions (what Ollama, llama.cpp's servers and vLLM speak)."""

from __future__ import annotations

import itertools
import json

import anthropic
import httpx
import pytest

from tests.emulator import Call, Reasoning, Reply, Text
from tests.support.conversation import Conversation, tool_turns

BASH = {"name": "Bash", "input_schema": {"type": "object",
                                         "properties": {"command": {"type": "string"}}}}


@pytest.fixture
async def chat_lmsd(start_lmsd, emulator):
    return await start_lmsd(emulator.url, upstream_api="chat")


@pytest.fixture
async def chat_client(chat_lmsd):
    async with anthropic.AsyncAnthropic(base_url=chat_lmsd.url, api_key="x",
                                        max_retries=0) as client:
        yield client


def chat_requests(emulator):
    return [r for r in emulator.log if r.path == "/v1/chat/completions"]


async def test_text_thinking_and_tool_call(chat_client, emulator):
    emulator.script(Reply(Reasoning("plan it"), Text("Running."),
                          Call("Bash", {"command": "ls"})))
    async with chat_client.messages.stream(model="claude-sonnet-4-6", max_tokens=100,
                                           messages=[{"role": "user", "content": "go"}],
                                           tools=[BASH]) as stream:
        msg = await stream.get_final_message()
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
    assert msg.content[0].thinking == "plan it" and msg.content[0].signature
    assert msg.content[2].input == {"command": "ls"}
    assert msg.stop_reason == "tool_use"
    [sent] = chat_requests(emulator)
    assert sent.body["stream"] is True
    assert sent.body["tools"][0] == {"type": "function", "function": {
        "name": "Bash", "parameters": BASH["input_schema"]}}


async def test_a_stateless_tool_loop_is_prefix_stable(chat_client, emulator, chat_lmsd):
    emulator.script(*tool_turns(3), Reply(Text("end")))
    chat = Conversation(chat_client)
    for turn in range(4):
        await chat.send("start" if turn == 0 else None)
    bodies = [r.body for r in chat_requests(emulator)]
    assert len(bodies) == 4
    for before, after in itertools.pairwise(bodies):
        assert "previous_response_id" not in after
        # the unchanged part of the conversation is byte-identical turn after turn
        assert json.dumps(after["messages"]).startswith(json.dumps(before["messages"])[:-1])
    tool = bodies[1]["messages"][-1]
    assert tool["role"] == "tool" and tool["content"].startswith("output of")
    status = (await httpx.AsyncClient(base_url=chat_lmsd.admin_url).get("/status")).json()
    assert status["upstream"]["api"] == "chat"
    [stats] = chat_lmsd.store.stats.values()
    assert stats.misses == {} and stats.unchained_turns == 4 and stats.chain_hits == 0


async def test_non_streaming_and_max_tokens(chat_client, emulator):
    emulator.script(Reply(Text("cut off"), incomplete=True))
    msg = await chat_client.messages.create(model="claude-x", max_tokens=5,
                                            messages=[{"role": "user", "content": "go"}])
    assert msg.content[0].text == "cut off" and msg.stop_reason == "max_tokens"


async def test_context_overflow_is_prompt_too_long(chat_client, emulator):
    emulator.models["qwen/qwen3-coder-30b"].context_length = 50
    with pytest.raises(anthropic.BadRequestError) as info:
        await chat_client.messages.create(model="claude-x", max_tokens=5,
                                          messages=[{"role": "user", "content": "w " * 500}])
    assert info.value.body["error"]["message"].startswith("prompt is too long: ")


async def test_auto_picks_responses_for_lm_studio(lmsd, emulator):
    async with httpx.AsyncClient(base_url=lmsd.admin_url) as http:
        upstream = (await http.get("/status")).json()["upstream"]
    assert upstream["api"] == "responses"
    assert "lmstudio-greeting" in upstream["api_why"]


@pytest.mark.parametrize("setting", ["auto", "chat"])
async def test_llama_server_gets_a_named_tool_choice_as_required(start_lmsd, emulator,
                                                                setting):
    """llama-server (it answers /props) reads ``tool_choice`` only as a string and takes
    OpenAI's object for ``auto``: the named tool goes as ``required``, alone. (A build
    with its own /v1/messages gets the messages kind under auto: here an older one.)"""
    emulator.lmstudio_api, emulator.llama_server = False, True
    emulator.messages_flavor = "none"
    emulator.script(Reply(Call("Bash", {"command": "ls"})))
    server = await start_lmsd(emulator.url, upstream_api=setting,
                              model="qwen/qwen3-coder-30b")
    other = {**BASH, "name": "Other"}
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="x",
                                        max_retries=0) as client:
        msg = await client.messages.create(
            model="claude-x", max_tokens=50, messages=[{"role": "user", "content": "go"}],
            tools=[other, BASH], tool_choice={"type": "tool", "name": "Bash"})
    assert msg.stop_reason == "tool_use"
    [sent] = chat_requests(emulator)
    assert sent.body["tool_choice"] == "required"
    assert [t["function"]["name"] for t in sent.body["tools"]] == ["Bash"]
    async with httpx.AsyncClient(base_url=server.admin_url) as http:
        upstream = (await http.get("/status")).json()["upstream"]
    assert upstream["api"] == "chat"
    if setting == "auto":
        assert upstream["api_why"] == "llama-server answered /props: /v1/chat/completions"


async def test_other_chat_servers_get_openais_named_tool_choice(chat_client, emulator):
    emulator.script(Reply(Call("Bash", {"command": "ls"})))
    await chat_client.messages.create(
        model="claude-x", max_tokens=50, messages=[{"role": "user", "content": "go"}],
        tools=[BASH], tool_choice={"type": "tool", "name": "Bash"})
    [sent] = chat_requests(emulator)
    assert sent.body["tool_choice"] == {"type": "function", "function": {"name": "Bash"}}
