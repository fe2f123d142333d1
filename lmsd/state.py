"""The state one running lmsd shares between its children (the ``Daemon``).

The supervisor builds it; the fronts and the admin API read it. That puts it one floor
below them and above what it holds (upstreams, sessions, the bus), not in ``daemon/``:
an app importing from its own supervisor's package would point up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio

from .bus import EventBus
from .config import Settings
from .log import event
from .metrics import Metrics
from .protocol.fit import LearnedLimits
from .sessions.store import SessionStore
from .upstreams.client import Upstream
from .upstreams.dialect import UNDECIDED, Dialect, ResponsesDialect, decide
from .upstreams.watcher import Watcher


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
    dialect_for: tuple[str, Dialect] | None = None  # (upstream url, its dialect)
    chaining_refused: bool = False
    learned_limits: LearnedLimits = field(default_factory=LearnedLimits)

    def loaded_contexts(self) -> dict[str, int]:
        """Each loaded model's context length, by model key and by instance id, as the
        engine lists them (the watcher's last look, else the proxy's last listing)."""
        listed = self.watcher.models.values() if self.watcher.polls else self.upstream.listed
        contexts: dict[str, int] = {}
        for m in listed:
            if m.context_length:
                contexts.setdefault(m.key, m.context_length)
                contexts[m.instance_id] = m.context_length
        return contexts

    def context_limit(self, model: str) -> int | None:
        """The context ``model`` is loaded with, when lmsd can know it: from the engine's
        listing, else from the last overflow the engine reported. None while a reload to
        ``min_context`` is due or under way (the request will wait for it)."""
        if self.watcher.reloading(model):
            return None
        limit = self.loaded_contexts().get(model)
        if limit:
            if self.settings.watch and limit < self.settings.min_context:
                return None  # the watcher is about to raise it
            return limit
        return self.learned_limits.get(self.upstream.base_url, model, trio.current_time())

    def learn_limit(self, model: str, limit: int) -> None:
        """Remember the context limit an engine stated in an overflow error."""
        self.learned_limits.learn(self.upstream.base_url, model, limit, trio.current_time())

    async def dialect(self) -> Dialect:
        """The dialect for the current upstream, chosen once per upstream URL (by
        ``decide``); until anything answers there, Responses, undecided."""
        url = self.upstream.base_url
        if self.dialect_for is None or self.dialect_for[0] != url:
            decided = await decide(self.upstream.client, url, self.settings.upstream_api)
            if decided is None:
                return ResponsesDialect(self.upstream, UNDECIDED)  # decide once it answers
            kind, why = decided
            self.dialect_for = (url, kind(self.upstream, why))
            self.upstream.name = kind.server_name
            event("upstream.dialect", url=url, dialect=kind.name, why=why)
        return self.dialect_for[1]

    def decided_dialect(self) -> Dialect | None:
        """The dialect chosen for the current upstream, if it has been (for /status)."""
        if self.dialect_for is None:
            return None
        return self.dialect_for[1]

    def refuse_chaining(self) -> None:
        if not self.chaining_refused:
            self.chaining_refused = True
            event("upstream.chaining_unsupported", level=30, url=self.upstream.base_url,
                  effect="full history on every request from now on")

    def stream_opened(self) -> None:
        self.active_streams += 1
        self.streams_idle = trio.Event()

    def stream_closed(self) -> None:
        self.active_streams -= 1
        if self.active_streams == 0:
            self.streams_idle.set()

    def no_model_message(self) -> str:
        """Why nothing can be served yet: for requests (503) and ``/readyz``."""
        return (f"{self.upstream.name} at {self.upstream.base_url} has no model loaded: load "
                f"one (in LM Studio, or `lms load <model>`), or set `model` in lmsd's config")

    async def loaded_models(self) -> list[str]:
        """Models that can serve a request now, or soon (being reloaded)."""
        if self.watcher.polls:
            loaded = self.watcher.loaded()
            if loaded:
                return loaded
        loaded, _ = await self.upstream.models()
        return loaded
