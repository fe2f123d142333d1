"""The models lmsd starts itself (``[[models]]`` tables with a ``command``) as a ``Loader``:
loading one starts its engine (``engines_started.StartedEngine``), unloading it stops it.

The engines run in the nursery of ``run`` (the supervisor's, beside the pools), never in a
request's: a client that leaves during a load does not stop the engine the others wait
for, and when lmsd stops, every engine stops with it. A crashed engine is restarted by
``StartedEngine`` itself; meanwhile it is not loaded, and requests wait for it (``load``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from ...config.models import ModelEntry
from ...log import event
from ...protocol.failures import ModelUnavailable, NotFound
from ..engines_started import Backoff, EngineFailed, StartedEngine, free_port
from .pool import Listed

#: The longest the slot saves before a stop may take (a large KV is seconds to write).
SAVE_WAIT = 60.0
#: Seconds past its ``health_timeout`` a request waits for a crashed engine to come back
#: (the back-off between restarts reaches a minute).
RESTART_WAIT = 60.0


@dataclass
class _Running:
    """One engine lmsd started, from its start until it stopped."""

    engine: StartedEngine
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    up: trio.Event = field(default_factory=trio.Event)  # first answered, or failed
    stopped: trio.Event = field(default_factory=trio.Event)
    failure: EngineFailed | None = None
    stopping: bool = False
    began: float = field(default_factory=trio.current_time)


class StartedModels:
    """The started ``[[models]]`` entries of one box; ``ports`` are the ones their backends
    were given (a start keeps its port while it is free). ``on_ready(model, url,
    restarted)`` hears each time an engine answers (its cache is empty)."""

    def __init__(self, entries: list[ModelEntry], *,
                 on_ready: Callable[[str, str, bool], None] | None = None,
                 before_stop: Callable[[str], Awaitable[None]] | None = None,
                 backoff: Callable[[], Backoff] = Backoff) -> None:
        self.entries = {e.name: e for e in entries if e.started}
        self.ports = {name: free_port() for name in self.entries}
        self.on_ready = on_ready
        #: Before an engine is stopped on purpose: what its cache holds is saved (its
        #: conversations' slot files), so their next turns restore rather than prefill.
        self.before_stop = before_stop
        self.backoff = backoff
        self._running: dict[str, _Running] = {}
        self._nursery: trio.Nursery | None = None
        self._opened = trio.Event()

    def url(self, model: str) -> str:
        """Where ``model``'s engine answers when it runs (its backend's URL)."""
        return f"http://127.0.0.1:{self.ports[model]}"

    # -- the supervised task ------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Own the engines until cancelled; then every one stops before this returns."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._opened.set()
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery, self._opened = None, trio.Event()

    async def _keep(self, name: str, running: _Running) -> None:
        try:
            with running.scope:
                await running.engine.run()
        except EngineFailed as exc:
            running.failure = exc
            event("model.load_failed", level=logging.ERROR, model=name, upstream=name,
                  why="request", error=str(exc))
        finally:
            running.up.set()
            running.stopped.set()
            if self._running.get(name) is running:
                del self._running[name]
            if running.engine.port is not None:
                self.ports[name] = running.engine.port

    def _ready(self, name: str, running: _Running, url: str, restarted: bool) -> None:
        if not restarted:
            event("model.load", model=name, upstream=name, why="request", url=url,
                  pid=running.engine.pid,
                  seconds=round(trio.current_time() - running.began, 3))
        running.up.set()
        if self.on_ready is not None:
            self.on_ready(name, url, restarted)

    # -- the Loader ---------------------------------------------------------------------------

    def is_loaded(self, model: str) -> bool:
        """Its engine runs and answers (not starting, restarting, nor stopping)."""
        running = self._running.get(model)
        if running is None or running.stopping or running.engine.url is None:
            return False
        process = running.engine.process
        return process is not None and process.returncode is None

    def parked(self, model: str) -> bool:
        """Not answering on purpose or for now (stopped, starting, restarting): its backend
        is neither polled nor counted down meanwhile."""
        return not self.is_loaded(model)

    def listing(self) -> dict[str, Listed]:
        out = {}
        for name, entry in self.entries.items():
            running = self._running.get(name)
            extra: dict[str, Any] | None = None
            if running is not None and running.engine.pid is not None:
                extra = {"pid": running.engine.pid, "url": running.engine.url}
            out[name] = Listed(name, self.is_loaded(name), entry.memory_bytes(), extra=extra)
        return out

    async def load(self, model: str) -> None:
        """Start ``model``'s engine (or join its start, or its restart after a crash) and
        return once it answers; raise ModelUnavailable with the engine's own words (its
        exit code, the end of its output) when it does not come up."""
        entry = self.entries.get(model)
        if entry is None:
            raise NotFound(f"{model} is not a [[models]] entry lmsd starts "
                           f"(those are: {', '.join(self.entries) or 'none'})")
        running = self._running.get(model)
        if running is not None and running.stopping:
            await running.stopped.wait()
            running = None
        if running is None:
            await self._opened.wait()  # ``run`` owns the engines (the supervisor starts it)
            running = self._running.get(model) or self._start(entry)
        await running.up.wait()
        if running.failure is not None:
            raise ModelUnavailable(f"lmsd could not start {model}: {running.failure}")
        with trio.move_on_after(entry.health_timeout + RESTART_WAIT):
            await running.engine.wait_ready()  # after a crash: its restart
            return
        raise ModelUnavailable(f"{model}'s engine crashed and did not come back within "
                               f"{entry.health_timeout + RESTART_WAIT:g} s; "
                               f"its output ends: {' | '.join(running.engine.tail)}")

    def _start(self, entry: ModelEntry) -> _Running:
        assert self._nursery is not None
        engine = StartedEngine(entry, backoff=self.backoff())
        engine.port = self.ports[entry.name]  # ``free_port`` prefers it
        running = self._running[entry.name] = _Running(engine)
        engine.on_ready = lambda url, restarted: self._ready(entry.name, running, url,
                                                             restarted)
        event("model.loading", model=entry.name, upstream=entry.name, why="request",
              command=entry.command[0])
        self._nursery.start_soon(self._keep, entry.name, running)
        return running

    async def unload(self, model: str) -> None:
        """Stop ``model``'s engine (SIGTERM, SIGKILL after a grace period) and wait until
        its process is gone."""
        running = self._running.get(model)
        if running is None:
            raise NotFound(f"{model} is not running")
        if self.before_stop is not None and self.is_loaded(model):
            with trio.move_on_after(SAVE_WAIT):  # a save that hangs does not hold the swap
                await self.before_stop(model)
        running.stopping = True
        running.scope.cancel()
        await running.stopped.wait()
