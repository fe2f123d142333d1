"""Helpers for tests that drive an in-process lmsd (the `start_lmsd` fixture): the model the
emulator has loaded, waiting for a bus event or for watcher polls, GETs on the admin API."""

from __future__ import annotations

from typing import Any

import httpx
import trio

MODEL = "qwen/qwen3-coder-30b"


async def next_event(sub, kind: str, limit: float = 20) -> dict[str, Any]:
    with trio.fail_after(limit):
        while True:
            item = await sub.next()
            if item.get("type") == kind:
                return item


async def polls(server, count: int) -> None:
    """Wait until the watcher has polled ``count`` more times."""
    target = server.router.backends[0].watcher.polls + count
    with trio.fail_after(10):
        while server.router.backends[0].watcher.polls < target:
            await trio.sleep(0.02)


async def admin_get(server, path: str, **kw) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.admin_url) as http:
        return await http.get(path, **kw)
