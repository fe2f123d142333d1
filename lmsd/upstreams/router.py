"""The upstream side of lmsd as the fronts see it: the ``Router`` over every ``Backend``.

A front asks the router for a ``Route``: which upstream serves this conversation's
request, under which model id, and why. The router filters the upstreams by model
(``Backend.target``), by health (each backend's breaker) and hands the rest to
``Placement``, which keeps the conversation where its cache is. A route that fails before
its first token is moved (``failover``) to the next eligible upstream; the chain never
crosses upstreams (the front plans the moved request in full).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import trio

from ..config.sections import RouterSettings
from ..log import event
from ..protocol.anthropic.side import is_haiku_name
from ..protocol.failures import (
    Failure,
    ModelUnavailable,
    NotFound,
    Overloaded,
    Unreachable,
)
from ..protocol.models import is_claude_name
from .backend import Backend, Readiness
from .placement import Candidate, Choice, Placement

__all__ = ["Backend", "Readiness", "Route", "Router"]


@dataclass
class Route:
    """Where one request goes: the backend, the model id there, and why."""

    backend: Backend
    model: str
    choice: Choice
    tried: tuple[str, ...] = ()  # upstreams this request already failed on
    probe: bool = False  # it is the half-open probe of its recovering upstream

    @property
    def upstream(self) -> str:
        return self.backend.name

    @contextmanager
    def lease(self) -> Iterator[None]:
        """Count the request in flight on its backend (and its model) while it runs."""
        self.backend.in_flight += 1
        self.backend.served += 1
        pool = self.backend.pool
        try:
            if pool is None:
                yield
            else:
                with pool.use(self.model):  # not unloaded while it runs
                    yield
        finally:
            self.backend.in_flight -= 1
            if self.probe:  # a probe that told nothing (the client left): allow another
                self.backend.breaker.release()


def started_by_lmsd(backend: Backend) -> bool:
    """Its engine is one lmsd starts itself (a ``[[models]]`` command): its own model's."""
    return backend.discovery.get("source") == "started"


def is_background(requested: str) -> bool:
    """By its name alone: Claude Code's side requests (titles, haiku subagents) ask for a
    haiku-class name. The Anthropic front also knows them by their shape
    (``protocol.anthropic.side``), and says so with ``background``."""
    return is_haiku_name(requested)


def _one_failure(message: str, troubles: list[Failure], count: int, *,
                 default: type[Failure]) -> Failure:
    """The failure for a message that names each upstream's trouble: their common kind
    when all ``count`` share one (every key refused: a 403 Claude Code shows at once),
    Unreachable when some are in trouble, else ``default``."""
    kinds = {type(t) for t in troubles}
    if len(troubles) == count and len(kinds) == 1:
        return kinds.pop()(message)
    return Unreachable(message) if troubles else default(message)


class Router:
    def __init__(self, settings: RouterSettings, backends: list[Backend], *,
                 active_window: float) -> None:
        if not backends:
            raise ValueError("a router needs at least one upstream")
        self.settings = settings
        self.backends = backends
        self.placement = Placement(spill_in_flight=settings.spill_in_flight,
                                   active_window=active_window,
                                   round_robin=settings.routing == "round_robin")

    @property
    def several(self) -> bool:
        return len(self.backends) > 1

    def backend(self, name: str) -> Backend | None:
        return next((b for b in self.backends if b.name == name), None)

    # -- placing a request -------------------------------------------------------------------

    async def route(self, requested: str, *, session: str, agent: str,
                    override: str | None = None, lenient: bool = False,
                    holder: str | None = None, exclude: tuple[str, ...] = (),
                    probe: bool = True, background: bool | None = None) -> Route:
        """The upstream for this conversation's request. ``holder``: the upstream that
        holds its stored chain; ``exclude``: upstreams it already failed on; ``probe``:
        the request may be the half-open probe of a recovering upstream (a request that
        reports no outcome, like a token count, may not); ``background``: a side request
        (None: judged by ``requested``'s name)."""
        targets = await self._targets(requested, override, lenient)
        now = trio.current_time()
        if not self.several:
            backend, model = self.backends[0], targets.get(self.backends[0].name)
            if model is None:
                raise backend.why_not(now)  # the real reason, not always "no model"
            # Nothing to choose, but the conversation is placed here all the same: the
            # upstream's active sessions (``/upstreams``) count it.
            self.placement.touch((session, agent), backend.name, now)
            return Route(backend, model, Choice(backend.name, "only"))
        candidates = [self._candidate(b, now) for b in self.backends if b.name in targets]
        if not candidates:
            raise self._none_serves(requested, now)
        if background is None:
            background = is_background(requested)
        prefer = self.settings.background_upstream if background else None
        choice = self.placement.choose((session, agent), candidates, now, holder=holder,
                                       prefer=prefer, exclude=exclude)
        if choice is None:
            raise self._none_available(requested, candidates, exclude)
        backend = self.backend(choice.upstream)
        assert backend is not None
        probing = backend.breaker.state != "closed"
        if not (backend.breaker.claim(now) if probe else not probing):
            # the half-open probe is taken (or may not be taken by this request)
            return await self.route(requested, session=session, agent=agent,
                                    override=override, lenient=lenient, holder=holder,
                                    exclude=(*exclude, backend.name), probe=probe,
                                    background=background)
        if choice.moved_from or choice.why not in ("pinned", "background"):
            event("upstream.placed", session=session, agent=agent, upstream=choice.upstream,
                  why=choice.why, moved_from=choice.moved_from, model=targets[backend.name])
        return Route(backend, targets[backend.name], choice, exclude, probe=probing)

    async def failover(self, route: Route, error: Failure, requested: str, *,
                       session: str, agent: str, override: str | None = None,
                       lenient: bool = False, background: bool | None = None
                       ) -> Route | None:
        """After ``route`` failed before its first token: the next eligible route, or None
        when there is none (the client sees ``error``). The exchange has already counted
        the failure against the backend (``routed.Binding.unwell``): counted here again, two
        timeouts would take an upstream out instead of ``breaker_failures``."""
        if not self.several:
            return None
        tried = (*route.tried, route.upstream)
        try:
            moved = await self.route(requested, session=session, agent=agent,
                                     override=override, lenient=lenient, exclude=tried,
                                     background=background)
        except Failure:
            return None
        event("upstream.failover", level=30, session=session, agent=agent,
              failed=route.upstream, error=error.message, to=moved.upstream)
        return moved

    async def _targets(self, requested: str, override: str | None, lenient: bool
                       ) -> dict[str, str]:
        """Each backend that serves the request, with the model id to ask it for."""
        targets: dict[str, str] = {}
        now = trio.current_time()
        for backend in self.backends:
            model = backend.target(requested, override, lenient=lenient)
            if model is None and backend.available(now):
                try:  # it needs a loaded model and none was seen: look (a cached listing)
                    loaded = await backend.loaded_models()
                except Failure:
                    if not self.several:
                        raise  # what is wrong with the one upstream is the answer
                    continue
                model = backend.target(requested, override, loaded=loaded, lenient=lenient)
            if model is None:
                continue
            if not self.several or backend.serves(model) is not False:
                targets[backend.name] = model  # None: never listed yet, give it a chance
        if not targets and not override and (lenient or is_claude_name(requested)):
            # Only models lmsd starts, none running yet (a session's first request, its
            # title, a haiku side request): the client's own name goes to the first of
            # them, which this request starts (``model``/``model_map`` choose another).
            first = next((b for b in self.backends if b.parked() and b.config.models), None)
            if first is not None and all(b.parked() for b in self.backends):
                targets[first.name] = first.config.models[0]
        return targets

    def _candidate(self, backend: Backend, now: float) -> Candidate:
        return Candidate(backend.name, backend.config.weight, backend.in_flight,
                         backend.config.max_concurrent, backend.available(now))

    def _none_serves(self, requested: str, now: float) -> Failure:
        """No upstream serves ``requested``: each named, with why. When every one is in
        trouble (down, refusing the key), that is the failure; when they answer and
        none lists the model, it is not found."""
        troubles = {b.name: b.trouble(now) for b in self.backends}
        why = "; ".join(f"{b.name}: {self._why(b, troubles[b.name])}" for b in self.backends)
        message = f"no upstream can serve model {requested!r} ({why})"
        default = ModelUnavailable if is_claude_name(requested) else NotFound
        return _one_failure(message, [t for t in troubles.values() if t is not None],
                            len(self.backends), default=default)

    @staticmethod
    def _why(backend: Backend, trouble: Failure | None) -> str:
        if trouble is not None:
            return trouble.message
        served = backend.config.models or backend.loaded_now()
        where = f"{backend.server_name} at {backend.base_url}"
        return f"{where} serves only {', '.join(served)}" if served else \
            f"{where} has no model loaded"

    def _none_available(self, requested: str, candidates: list[Candidate],
                        exclude: tuple[str, ...]) -> Failure:
        names = ", ".join(c.name for c in candidates)
        if all(c.available for c in candidates) and not exclude:
            return Overloaded(f"every upstream serving {requested!r} is at its limit "
                              f"({names})")
        now = trio.current_time()
        said: list[str] = []
        troubles: list[Failure] = []
        for candidate in candidates:
            backend = self.backend(candidate.name)
            assert backend is not None
            trouble = backend.trouble(now)
            if trouble is not None:
                troubles.append(trouble)
                said.append(f"{backend.name}: {trouble.message}")
            elif candidate.name in exclude:
                said.append(f"{backend.name}: failed this request")
            else:
                said.append(f"{backend.name}: at its limit of {candidate.max_concurrent}")
        return _one_failure(f"no upstream serving {requested!r} is available "
                            f"({'; '.join(said)})", troubles, len(candidates),
                            default=Unreachable)

    # -- across every upstream ---------------------------------------------------------------

    def set_api_key(self, api_key: str) -> None:
        """The global key (SIGHUP), for every upstream without a key of its own."""
        for backend in self.backends:
            if not backend.config.api_key:
                backend.set_api_key(api_key)

    async def aclose(self) -> None:
        for backend in self.backends:
            await backend.aclose()

    async def models(self) -> tuple[list[str], list[str]]:
        """(loaded model ids, every model id) over every upstream that answers."""
        loaded: list[str] = []
        listed: list[str] = []
        error: Failure | None = None
        for backend in self.backends:
            if backend.parked():  # an engine lmsd starts on demand: listed, not loaded
                listed += [m for m in backend.config.models if m not in listed]
                continue
            try:
                one_loaded, one_listed = await backend.models()
            except Failure as exc:
                error = error or exc
                continue
            loaded += [m for m in one_loaded if m not in loaded]
            listed += [m for m in one_listed if m not in listed]
        if error is not None and not loaded and not listed:
            raise error
        return loaded, listed

    async def loaded_models(self) -> list[str]:
        loaded: list[str] = []
        for backend in self.backends:
            try:
                loaded += [m for m in await backend.loaded_models() if m not in loaded]
            except Failure:
                continue
        return loaded

    def loaded_contexts(self) -> dict[str, int]:
        contexts: dict[str, int] = {}
        for backend in self.backends:
            for model, context in backend.loaded_contexts().items():
                contexts.setdefault(model, context)
        return contexts

    def no_model_message(self) -> str:
        return self.backends[0].no_model_message()

    async def readiness(self) -> Readiness:
        """Ready when any upstream is (the others are reported by ``/upstreams``)."""
        first: Readiness | None = None
        for backend in self.backends:
            ready = await backend.readiness()
            if ready.problem is None:
                return ready
            first = first or ready
        assert first is not None
        if self.several:
            return Readiness(first.url, [], f"no upstream is ready; {first.problem}")
        return first

    def forget(self, session: str | None = None) -> None:
        """Drop the session's pins (``lmsd reset``): its next request is placed anew, and
        none of its conversations is warmed again."""
        self.placement.forget(session)
        for backend in self.backends:
            backend.keeper.forget(session)

    def upstreams_json(self) -> list[dict[str, Any]]:
        """Each upstream's health, load, dialect, and the conversations placed on it
        that were active within ``active_window`` (``/upstreams``; with several, those
        are the ones pinned there)."""
        now = trio.current_time()
        active = self.placement.active(now)
        return [{**backend.to_json(now, active.get(backend.name, ())),
                 **({"gateway": {"name": backend.config.gateway,  # and where the key goes
                                 "key_headers": list(self.settings.affinity_headers)}}
                    if backend.config.gateway else {}),
                 "active_window_s": self.placement.active_window,
                 # a model lmsd starts itself, and whether its engine is stopped on
                 # purpose (or starting): not down, a request starts it
                 "started": started_by_lmsd(backend),
                 "parked": backend.parked()} for backend in self.backends]
