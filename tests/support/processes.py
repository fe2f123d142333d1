"""Running lmsd, and the real CLIs (claude_cli, codex_cli), as processes in tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from functools import partial
from pathlib import Path
from typing import BinaryIO

import httpx
import trio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_until_answering(url: str, limit: float = 20) -> None:
    async with httpx.AsyncClient() as http:
        with trio.fail_after(limit):
            while True:
                try:
                    await http.get(url)
                    return
                except httpx.TransportError:
                    await trio.sleep(0.05)


async def start_daemon(nursery: trio.Nursery, *args: str, env: dict[str, str] | None = None
                       ) -> tuple[trio.Process, str, str]:
    """``lmsd serve ARGS`` on free ports; returns (process, proxy URL, admin URL) once the
    admin API answers."""
    port, admin = free_port(), free_port()
    argv = [sys.executable, "-m", "lmsd", "serve", "--listen", f"127.0.0.1:{port}",
            "--admin-listen", f"127.0.0.1:{admin}", "--log-level", "warning", *args]
    proc = await nursery.start(partial(trio.run_process, argv, check=False,
                                       env={**os.environ, **(env or {})}))
    await wait_until_answering(f"http://127.0.0.1:{admin}/healthz")
    return proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}"


def descendants(pid: int) -> list[int]:
    """PIDs of all live descendants of ``pid`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # Fields after the parenthesised command name: state, ppid, ...
            ppid = int(entry.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


async def kill_tree(proc: trio.Process) -> None:
    """Cancellation handler: SIGKILL the CLI and everything it spawned.

    The CLIs start their shell tools in new sessions, so killing the process group is not
    enough: freeze the CLI, collect its descendants, then kill them all.
    """
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGSTOP)
    for pid in descendants(proc.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def read_back(f: BinaryIO) -> str:
    """All of a temp file written by a child process, as text."""
    f.seek(0)
    return f.read().decode("utf-8", errors="replace")


def require_cli(path: str | None, *, name: str, env: str, require: str) -> str:
    """``path`` to a real CLI, or skip the test: fail it instead when ``require`` (e.g.
    ``LMSD_REQUIRE_CODEX``) is 1, as in CI. ``env`` names the variable that points at it."""
    import pytest

    if path:
        return path
    if os.environ.get(env):
        msg = f"{env}={os.environ[env]!r} is not a usable {name} binary"
    else:
        msg = f"{name} CLI not found (run .ci/run, or set {env})"
    if os.environ.get(require) == "1":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def port_of(url: str) -> int:
    """The port of ``http://host:port`` (what a test's server reported)."""
    return int(url.rsplit(":", 1)[1])
