"""One upstream's models on demand (or the models lmsd starts itself, which share one box):
``ensure`` loads the model a request names, once, after making room for it; ``use`` counts
the requests in flight on each model; ``run`` unloads the ones idle past their ttl.

What to unload is ``policy.py``'s decision; how to load and unload is the ``Loader``'s (LM
Studio's REST API, or a process lmsd starts). One load at a time per pool: two loads
deciding at once could both count on the same free memory.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from ...config.models import ModelEntry
from ...log import event
from ...protocol.failures import Failure, ModelUnavailable, Overloaded
from .policy import Resident, idle, make_room

#: The longest a load waits for requests on the models that must leave to finish.
ROOM_WAIT = 600.0
#: The longest between two looks at the idle models.
IDLE_CHECK = 30.0


@dataclass
class Listed:
    """A model the loader can serve, as last seen."""

    name: str
    loaded: bool
    memory: int = 0  # bytes; 0: unknown
    context_length: int | None = None
    extra: dict[str, Any] | None = None  # what the loader adds to its row (pid, url)


class Loader(Protocol):
    """How one box loads and unloads its models."""

    def listing(self) -> dict[str, Listed]:
        """Every model it can serve, by name, as last seen (no I/O)."""
        ...

    def is_loaded(self, model: str) -> bool:
        """Cheap: on every request."""
        ...

    async def load(self, model: str) -> None:
        """Load ``model`` (or wait for a load under way); raise a Failure naming why not."""
        ...

    async def unload(self, model: str) -> None:
        """Unload ``model``; raise naming why not."""
        ...


@dataclass
class _Use:
    in_flight: int = 0
    last_used: float = 0.0
    loads: int = 0
    last_load_s: float | None = None
    state: str = ""  # loading, unloading, failed; empty: as the loader lists it
    by_lmsd: bool = False  # lmsd loaded it (and it has not left since): its ttl applies


class ModelPool:
    """The models of one box: loaded on request, within ``budget`` bytes (0: none), by the
    rules of their ``[[models]]`` entries (group, ttl, pinned, memory)."""

    def __init__(self, name: str, loader: Loader, *, budget: int = 0,
                 entries: list[ModelEntry] | None = None, ttl: float = 0.0,
                 upstream_of: Callable[[str], str] | None = None) -> None:
        self.name = name
        self.loader = loader
        self.budget = budget
        self.entries = {e.name: e for e in entries or ()}
        self.ttl = ttl  # the default idle ttl (model_ttl)
        self.upstream_of = upstream_of or (lambda model: name)
        self._use: dict[str, _Use] = {}
        self._loading: dict[str, trio.Event] = {}
        self._failed: dict[str, Failure] = {}
        self._one_load = trio.Lock()
        self._released = trio.Event()  # a request ended: room may have been freed

    # -- a request's model ----------------------------------------------------------------------

    async def ensure(self, model: str) -> None:
        """Return once ``model`` is loaded: at once when it is, else after its one load
        (requests that arrive meanwhile wait for the same load); raise why it cannot be."""
        if model in self._loading:
            event("request.waiting_for_reload", model=model, upstream=self.upstream_of(model))
            await self._loading[model].wait()
            if model in self._failed:
                raise self._failed[model]
            return
        if self.loader.is_loaded(model):
            return
        done = self._loading[model] = trio.Event()  # claimed before any await: one load
        self._failed.pop(model, None)
        use = self._use.setdefault(model, _Use())
        try:
            async with self._one_load:
                if not self.loader.is_loaded(model):  # a load before ours may have done it
                    use.state = "loading"
                    if model in self.loader.listing():  # else the loader says why not
                        await self._make_room(model)
                    started = trio.current_time()
                    await self.loader.load(model)
                    use.loads += 1
                    use.by_lmsd = True
                    use.last_load_s = round(trio.current_time() - started, 3)
                    use.last_used = trio.current_time()
        except Failure as exc:
            self._failed[model] = exc
            raise
        finally:
            use.state = "failed" if model in self._failed else ""
            del self._loading[model]
            done.set()

    @contextmanager
    def use(self, model: str) -> Iterator[None]:
        """Count a request on ``model`` while it runs (it is not unloaded meanwhile)."""
        use = self._use.setdefault(model, _Use())
        use.in_flight += 1
        use.last_used = trio.current_time()
        try:
            yield
        finally:
            use.in_flight -= 1
            use.last_used = trio.current_time()
            self._released.set()
            self._released = trio.Event()

    # -- making room ----------------------------------------------------------------------------

    def _entry(self, model: str) -> ModelEntry:
        return self.entries.get(model) or ModelEntry(name=model)

    def _memory(self, model: str, listed: Listed | None) -> int:
        entry = self.entries.get(model)
        configured = entry.memory_bytes() if entry is not None else 0
        return configured or (listed.memory if listed is not None else 0)

    def residents(self) -> list[Resident]:
        """The loaded models, as the policy weighs them."""
        out = []
        for name, listed in self.loader.listing().items():
            use = self._use.get(name, _Use())
            if not listed.loaded:
                use.by_lmsd = False  # it left: whoever loads it next owns it
                continue
            entry = self._entry(name)
            out.append(Resident(
                name, self._memory(name, listed), entry.group, use.last_used, use.in_flight,
                entry.pinned, use.by_lmsd, self.ttl if entry.ttl is None else entry.ttl))
        return out

    async def _make_room(self, model: str) -> None:
        listed = self.loader.listing().get(model)
        memory, group = self._memory(model, listed), self._entry(model).group
        with trio.move_on_after(ROOM_WAIT) as waited:
            while True:
                room = make_room(model, memory, group, self.residents(), self.budget)
                if room.refused is not None:
                    event("model.load_refused", level=logging.WARNING, model=model,
                          upstream=self.upstream_of(model), why=room.refused)
                    raise ModelUnavailable(f"lmsd cannot load {model} on {self.name}: "
                                           f"{room.refused}")
                if room.clear:
                    for leave in room.unload:
                        await self.unload(leave.name, leave.why, swap_for=model,
                                          cause=leave.cause)
                    if room.unload:
                        event("model.swap", model=model, upstream=self.upstream_of(model),
                              unloaded=[leave.name for leave in room.unload])
                    return
                event("model.waiting", model=model, upstream=self.upstream_of(model),
                      for_requests_on=list(room.wait_for))
                await self._released.wait()
        assert waited.cancelled_caught
        raise Overloaded(f"lmsd could not make room for {model} on {self.name} within "
                         f"{ROOM_WAIT:g} s: requests on {', '.join(room.wait_for)} kept "
                         f"running")

    async def unload(self, model: str, why: str, *, swap_for: str | None = None,
                     cause: str = "ttl") -> None:
        """Unload ``model``: ``cause`` (group, budget, ttl) for metrics, ``why`` in words;
        ``swap_for``: the model it makes room for."""
        use = self._use.setdefault(model, _Use())
        use.state = "unloading"
        listed = self.loader.listing().get(model)
        started = trio.current_time()
        try:
            await self.loader.unload(model)
            use.by_lmsd = False
        except Exception as exc:  # the loader's failure, whatever it is, is reported
            event("model.unload_failed", level=logging.ERROR, model=model,
                  upstream=self.upstream_of(model), why=why, error=str(exc) or type(exc).__name__)
            raise ModelUnavailable(f"lmsd could not unload {model} on {self.name} "
                                   f"({why}): {exc}") from None
        finally:
            use.state = ""
        event("model.unload", model=model, upstream=self.upstream_of(model), why=why,
              cause=cause, swap_for=swap_for, memory_bytes=self._memory(model, listed),
              idle_s=round(trio.current_time() - use.last_used, 1) if use.last_used else None,
              seconds=round(trio.current_time() - started, 3))

    # -- idle models ----------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Unload models idle past their ttl, until cancelled (the supervisor owns it)."""
        task_status.started()
        ttls = [t for t in (self.ttl, *(e.ttl for e in self.entries.values())) if t]
        every = min([IDLE_CHECK, *(t / 4 for t in ttls)])  # a model leaves within 1.25 ttl
        while True:
            await trio.sleep(every)
            if self._loading:
                continue
            for due in idle(self.residents(), trio.current_time()):
                async with self._one_load:  # still idle once no load runs?
                    if due.name in {r.name for r in idle(self.residents(), trio.current_time())}:
                        with contextlib.suppress(Failure):  # reported; tried again later
                            await self.unload(due.name, f"idle for {due.ttl:g} s (its ttl)")

    # -- what it shows --------------------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        """One row per model (``models/view.py`` says the fields)."""
        now = trio.current_time()
        rows = []
        listing = self.loader.listing()
        for name in [*listing, *(m for m in self.entries if m not in listing)]:
            listed = listing.get(name) or Listed(name, False)
            entry, use = self._entry(name), self._use.get(name, _Use())
            state = use.state or ("loaded" if listed.loaded else "not loaded")
            rows.append({
                "name": name, "upstream": self.upstream_of(name), "loaded": listed.loaded,
                "state": state, "memory_bytes": self._memory(name, listed),
                "context_length": listed.context_length,
                "idle_s": round(now - use.last_used, 1) if use.last_used else None,
                "in_flight": use.in_flight, "group": entry.group, "pinned": entry.pinned,
                "ttl_s": self.ttl if entry.ttl is None else entry.ttl,
                "by_lmsd": use.by_lmsd, "loads": use.loads, "last_load_s": use.last_load_s,
                "started": entry.started, **(listed.extra or {})})
        return rows

    def budget_json(self) -> dict[str, Any] | None:
        if not self.budget:
            return None
        return {"upstream": self.name, "budget_bytes": self.budget,
                "used_bytes": sum(r.memory for r in self.residents())}
