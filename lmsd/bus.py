"""The event bus: every structured log event, fanned out to live subscribers.

Events reach the bus through a logging handler, so one ``event(...)`` call both logs a
line and feeds ``WS /events``, the metrics and tests. Each subscriber has a bounded
queue: a slow one loses events (and is told how many), it never slows the proxy.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import trio

Event = dict[str, Any]
QUEUE_SIZE = 256
RECENT = 500  # events kept for subscribers that ask for a replay (``tail`` history)

# Every event type lmsd emits (a unit test checks this against the source), so that
# ``lmsd tail --type`` can refuse a typo instead of silently printing nothing.
EVENT_TYPES = frozenset({
    "cache.engine", "cache.lost", "cache.miss", "cache.pinned", "cache.released",
    "cache.parked", "cache.restore_ineffective", "cache.restored", "cache.saved",
    "cache.slot_failed", "cache.warmed", "cache.warmup", "cache.warmup_failed",
    "cache.warmup_preempted", "cache.warmup_skipped",
    "chain.decision", "chain.stale",
    "child.crashed", "child.restarted",
    "config.adjusted", "config.reload_failed", "config.reloaded",
    "daemon.drain_expired", "daemon.draining", "daemon.listening", "daemon.proxy_exposed",
    "daemon.stopped", "daemon.stopping",
    "engine.crashed", "engine.killed", "engine.output", "engine.restarted", "engine.started",
    "model.backoff_cleared", "model.context_capped", "model.context_changed",
    "model.context_enforced", "model.context_reverted", "model.load", "model.load_failed",
    "model.loaded", "model.loading", "model.reload_failed",
    "model.load_refused", "model.reloading", "model.restore_failed", "model.restored",
    "model.swap", "model.unload", "model.unload_failed", "model.unloaded", "model.waiting",
    "request.end", "request.refused", "request.rejected", "request.resend_answered",
    "request.too_long", "request.count_skipped", "responses.not_kept",
    "request.server_tools_dropped", "request.start", "request.waiting_for_reload",
    "session.config", "session.record", "session.recorded", "session.reset",
    "store.corrupt", "store.unavailable", "store.write_failed", "store.still_failing",
    "store.recovered",
    "tool_call.repaired", "tracing.on", "tracing.unavailable",
    "upstream.bad_event", "upstream.chaining_unsupported", "upstream.dialect",
    "upstream.discovered", "upstream.discovery_lms_failed", "upstream.down",
    "upstream.empty_stream", "upstream.failover", "upstream.ignored_events", "upstream.out",
    "upstream.one_at_a_time", "upstream.placed", "upstream.refused", "upstream.rejoined",
    "upstream.replica_failed",
    "upstream.up",
    "log.file_failed", "request.failed", "server.error", "session.record_failed",
    "dropped",  # sent by the bus itself to a subscriber that read too slowly
})


def known_type(name: str) -> bool:
    """Is ``name`` an event type, or a family of them (``request`` for ``request.*``)?"""
    return any(t == name or t.startswith(name + ".") for t in EVENT_TYPES)


def families() -> list[str]:
    """The event families, for a message that lists what exists."""
    return sorted({t.partition(".")[0] for t in EVENT_TYPES})


class Subscription:
    def __init__(self, session: str | None, types: tuple[str, ...], size: int) -> None:
        self.session = session
        self.types = types
        self.dropped = 0
        self._send, self._receive = trio.open_memory_channel[Event](size)

    def wants(self, event: Event) -> bool:
        if self.session is not None and event.get("session") != self.session:
            return False
        kind = str(event.get("type", ""))
        return not self.types or any(kind == t or kind.startswith(t + ".") for t in self.types)

    def offer(self, event: Event) -> None:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1

    async def next(self) -> Event:
        """The next event; a ``{"type": "dropped", "count": N}`` notice after losses."""
        if self.dropped:
            count, self.dropped = self.dropped, 0
            return {"type": "dropped", "count": count,
                    "reason": "this subscriber read too slowly"}
        return await self._receive.receive()


class EventBus:
    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self.recent: deque[Event] = deque(maxlen=RECENT)
        self._listeners: list[Callable[[Event], None]] = []
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.get_ident()

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """A synchronous observer of every event (metrics use this)."""
        self._listeners.append(listener)

    def publish(self, event: Event) -> None:
        """Deliver ``event``; never blocks. Safe to call from worker threads."""
        if threading.get_ident() != self._thread:
            self._token.run_sync_soon(self.publish, event)
            return
        self.recent.append(event)
        for listener in self._listeners:
            listener(event)
        for sub in self._subscribers:
            if sub.wants(event):
                sub.offer(event)

    @contextmanager
    def subscribe(self, *, session: str | None = None, types: tuple[str, ...] = (),
                  replay: int = 0) -> Iterator[Subscription]:
        """Subscribe; ``replay`` first delivers up to that many recent matching events."""
        sub = Subscription(session, types, self.queue_size)
        if replay > 0:
            for past in [e for e in self.recent if sub.wants(e)][-replay:]:
                sub.offer(past)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)


class BusHandler(logging.Handler):
    """Feeds ``lmsd`` log records to the bus as events."""

    def __init__(self, bus: EventBus) -> None:
        super().__init__(logging.DEBUG)
        self.bus = bus

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "lmsd_fields", None)
        if fields is None:
            return  # plain library log lines are not events
        with suppress(trio.RunFinishedError):
            self.bus.publish({"ts": round(record.created, 3), "type": record.getMessage(),
                              "level": record.levelname.lower(), **fields})
