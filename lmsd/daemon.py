"""The state one running lmsd shares between its children."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio

from .config import Settings
from .events import EventBus
from .metrics import Metrics
from .store import SessionStore
from .upstream import Upstream
from .watcher import Watcher


@dataclass
class Drain:
    """Shutdown in two steps: stop accepting, then (after the grace period) end streams."""

    started: trio.Event = field(default_factory=trio.Event)
    expired: trio.Event = field(default_factory=trio.Event)


@dataclass
class Daemon:
    settings: Settings
    upstream: Upstream
    store: SessionStore
    bus: EventBus
    metrics: Metrics
    watcher: Watcher
    discovery: dict[str, Any]
    drain: Drain = field(default_factory=Drain)
    started_at: float = field(default_factory=trio.current_time)
    active_streams: int = 0
    streams_idle: trio.Event = field(default_factory=trio.Event)

    def stream_opened(self) -> None:
        self.active_streams += 1
        self.streams_idle = trio.Event()

    def stream_closed(self) -> None:
        self.active_streams -= 1
        if self.active_streams == 0:
            self.streams_idle.set()

    async def loaded_models(self) -> list[str]:
        """Models that can serve a request now, or soon (being reloaded)."""
        if self.watcher.polls:
            loaded = self.watcher.loaded()
            if loaded:
                return loaded
        loaded, _ = await self.upstream.models()
        return loaded
