"""Killing lmsd (SIGKILL, no cleanup) between two turns keeps the chain."""

from __future__ import annotations

import signal
import socket
import sys
from functools import partial

import anthropic
import httpx
import trio

from tests.e2e.test_sessions import Conversation, tool_turns


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_daemon(nursery, upstream: str, state_dir: str) -> tuple[trio.Process, str]:
    port, admin = free_port(), free_port()
    args = [sys.executable, "-m", "lmsd", "serve", "--listen", f"127.0.0.1:{port}",
            "--admin-listen", f"127.0.0.1:{admin}", "--upstream", upstream,
            "--state-dir", state_dir, "--log-level", "warning"]
    proc = await nursery.start(partial(trio.run_process, args, check=False))
    async with httpx.AsyncClient() as http:
        with trio.fail_after(20):
            while True:
                try:
                    await http.get(f"http://127.0.0.1:{admin}/healthz")
                    break
                except httpx.TransportError:
                    await trio.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}"


async def test_sigkill_between_turns_keeps_the_chain(nursery, emulator, tmp_path):
    state = str(tmp_path / "state")
    emulator.script(*tool_turns(2))
    proc, url = await start_daemon(nursery, emulator.url, state)
    async with anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0) as client:
        chat = Conversation(client)
        await chat.send("start")
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    proc, url = await start_daemon(nursery, emulator.url, state)
    async with anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0) as client:
        chat.client = client
        await chat.send()
    first, second = emulator.generations
    assert second.body["previous_response_id"] == first.response_id
    assert [i["type"] for i in second.body["input"]] == ["function_call_output"]
    proc.terminate()
