"""Running lmsd as a real process in tests."""

from __future__ import annotations

import os
import socket
import sys
from functools import partial

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
