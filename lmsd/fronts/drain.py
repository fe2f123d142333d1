"""Shutdown in two steps, shared by the supervisor and the streaming bodies (``Drain``).

The supervisor starts the drain; each streaming body counts itself in and out and ends
its client's stream with an error once the grace period has expired, rather than letting
the connection be cut mid-event. It lives with the fronts, one floor below the
supervisor, so that both import it without pointing up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from ..log import event


@dataclass
class Drain:
    """Stop accepting (``started``), then after the grace period end streams (``expired``)."""

    started: trio.Event = field(default_factory=trio.Event)
    expired: trio.Event = field(default_factory=trio.Event)
    active_streams: int = 0
    streams_idle: trio.Event = field(default_factory=trio.Event)

    def stream_opened(self) -> None:
        self.active_streams += 1
        self.streams_idle = trio.Event()

    def stream_closed(self) -> None:
        self.active_streams -= 1
        if self.active_streams == 0:
            self.streams_idle.set()

    async def run(self, timeout: float) -> None:
        """Let in-flight streams finish for ``timeout`` seconds; then cut them (the bodies
        end each with an error event)."""
        self.started.set()
        event("daemon.draining", active_streams=self.active_streams, timeout_s=timeout)
        if self.active_streams:
            with trio.move_on_after(timeout):
                await self.streams_idle.wait()
        if self.active_streams:
            event("daemon.drain_expired", level=30, cut_streams=self.active_streams)
        self.expired.set()
