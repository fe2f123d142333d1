"""Upstreams a test can kill and bring back: an emulator served in its own cancel scope,
restartable on the same port (a restarted LM Studio, a rebooted box)."""

from __future__ import annotations

from typing import Any

import trio

from tests.emulator import Emulator, serve_emulator


class Box:
    """One emulated upstream machine."""

    def __init__(self, nursery: trio.Nursery, emu: Emulator, name: str) -> None:
        self.nursery, self.emu, self.name = nursery, emu, name
        self.url = ""
        self.port = 0
        self._scope: trio.CancelScope | None = None
        self._stopped = trio.Event()

    async def start(self) -> str:
        self.url = await self.nursery.start(self._serve)
        self.port = int(self.url.rsplit(":", 1)[1])
        return self.url

    async def _serve(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._stopped = trio.Event()
        try:
            with trio.CancelScope() as self._scope:
                async with trio.open_nursery() as inner:
                    url = await serve_emulator(inner, self.emu, port=self.port)
                    task_status.started(url)
        finally:
            self._stopped.set()

    async def stop(self) -> None:
        """Power off: the port refuses connections from now on."""
        assert self._scope is not None
        self._scope.cancel()
        await self._stopped.wait()

    async def restart(self) -> None:
        """Back on the same port, with a fresh state (stored responses are gone)."""
        self.emu.wipe_history()
        self.emu.prefix_cache.clear()
        await self.start()

    def requests(self, path: str = "/v1/messages") -> list[Any]:
        return [r for r in self.emu.log if r.path == path]

    def generations(self) -> list[Any]:
        return [r for r in self.emu.log if r.path in
                ("/v1/responses", "/v1/chat/completions", "/v1/messages")]


async def boxes(nursery: trio.Nursery, *names: str, **options: Any) -> list[Box]:
    started = []
    for name in names:
        box = Box(nursery, Emulator(**options), name)
        await box.start()
        started.append(box)
    return started


def upstreams(*boxes_: Box, **per_box: dict[str, Any]) -> list[dict[str, Any]]:
    """``[[upstreams]]`` entries for ``boxes_``, with extra keys by box name."""
    return [{"name": b.name, "url": b.url, **per_box.get(b.name, {})} for b in boxes_]
