"""Running ``python -m lmsd`` client commands against an in-process lmsd and the LM
Studio emulator: a clean environment, one-shot runs, a live ``lmsd tail``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import anthropic
import pytest
import trio

from tests.support.conversation import Conversation, tool_turns

LMSD = [sys.executable, "-m", "lmsd"]
NOT_RUNNING = ("lmsd: the daemon is not running (nothing answers at http://127.0.0.1:{port}); "
               "start it with: lmsd serve\n")
REFUSED = "lmsd: the admin API refused the token (set LMSD_ADMIN_TOKEN)\n"
MODEL = "qwen/qwen3-coder-30b"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMSD_")}
    env.pop("NO_COLOR", None)
    return {**env, **extra}


def admin_address(server: Any) -> str:
    return urlsplit(server.admin_url).netloc


async def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return await trio.run_process([*LMSD, *args], capture_stdout=True, capture_stderr=True,
                                  check=False, env=clean_env() if env is None else env)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    return result.stdout.decode()


async def converse(server: Any, emulator: Any, session: str = "sess-1", turns: int = 2,
                   agent: str | None = None) -> None:
    emulator.script(*tool_turns(turns))
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="x",
                                        max_retries=0) as client:
        chat = Conversation(client, session=session, agent=agent)
        await chat.send("start")
        for _ in range(turns - 1):
            await chat.send()


class Tail:
    """A running ``lmsd tail`` whose stdout is read line by line."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.buffer = b""

    async def line(self) -> str:
        assert self.process.stdout is not None
        while b"\n" not in self.buffer:
            chunk = await self.process.stdout.receive_some()
            assert chunk, "lmsd tail ended early"
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    async def lines_until(self, last: Callable[[str], bool]) -> list[str]:
        lines = []
        with trio.fail_after(30):
            while not lines or not last(lines[-1]):
                lines.append(await self.line())
        return lines


async def read_all(stream: Any) -> bytes:
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    return data


@asynccontextmanager
async def tailing(server: Any, *args: str, env: dict[str, str] | None = None
                  ) -> AsyncIterator[Tail]:
    """Start ``lmsd tail``, wait until it is subscribed; at the end, Ctrl-C it."""
    bus = server.bus
    before = bus.subscribers
    if not any(a.startswith("--replay") for a in args):
        args = ("--replay", "0", *args)  # live events only, unless a test asks
    process = await trio.lowlevel.open_process(
        [*LMSD, "tail", "--admin-listen", admin_address(server), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env() if env is None else env)
    try:
        with trio.fail_after(30):
            while bus.subscribers <= before:
                if process.poll() is not None:
                    assert process.stderr is not None
                    pytest.fail(f"lmsd tail exited: {await read_all(process.stderr)!r}")
                await trio.sleep(0.02)
        yield Tail(process)
        process.send_signal(signal.SIGINT)
        with trio.fail_after(30):
            assert process.stderr is not None
            errors = await read_all(process.stderr)
            assert await process.wait() == 0, errors
        assert errors == b""  # Ctrl-C is quiet
    finally:
        if process.poll() is None:
            process.kill()
            await process.wait()


def event_types(lines: list[str]) -> list[str]:
    return [json.loads(line)["type"] for line in lines]


def is_end(line: str) -> bool:
    return json.loads(line)["type"] == "request.end"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
