"""lmsd in front of a real llama-server that emits tool calls: the round trip, streamed
calls for chat clients, and a named tool_choice."""

from __future__ import annotations

import json

import pytest

from tests.engine.server import MODEL_ALIAS
from tests.support.llama_e2e import (
    BASH,
    CHAT_BASH,
    anthropic_client,
    openai_client,
    user,
)

pytestmark = pytest.mark.engine

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
