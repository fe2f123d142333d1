"""Killing lmsd (SIGKILL, no cleanup) between two turns keeps the chain."""

from __future__ import annotations

import signal

import anthropic

from tests.support.conversation import Conversation, tool_turns
from tests.support.processes import start_daemon


async def test_sigkill_between_turns_keeps_the_chain(nursery, emulator, tmp_path):
    state = str(tmp_path / "state")
    emulator.script(*tool_turns(2))
    proc, url, _ = await start_daemon(nursery, "--upstream", emulator.url, "--state-dir",
                                      state, "--no-watch")
    async with anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0) as client:
        chat = Conversation(client)
        await chat.send("start")
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    proc, url, _ = await start_daemon(nursery, "--upstream", emulator.url, "--state-dir",
                                      state, "--no-watch")
    async with anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0) as client:
        chat.client = client
        await chat.send()
    first, second = emulator.generations
    assert second.body["previous_response_id"] == first.response_id
    assert [i["type"] for i in second.body["input"]] == ["function_call_output"]
    proc.terminate()
