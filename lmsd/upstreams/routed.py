"""One request's way upstream, as a turn sees it: ``Routed`` asks the router where the
request goes and plans it for that upstream; ``Binding`` is the upstream a turn is bound
to, behind the few calls ``exchange.py`` makes (wait for a reload, count in flight,
steer the engine's slot, stream, and say how it went). A chain never crosses upstreams:
a request moved by ``failover`` is planned in full where it lands."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager, suppress
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from ..protocol.failures import ContextOverflow, Failure
from ..protocol.pivot import Conversation, Usage
from ..protocol.plan import TurnPlan
from ..sessions.store import SessionKey, SessionStore
from .cache.slots import BACKGROUND
from .dialect import UNDECIDED, Batches, Dialect
from .router import Backend, Route, Router, is_background, started_by_lmsd
from .tap import note_binding

__all__ = ["Binding", "Routed"]


class Binding:
    """A turn bound to one upstream: its dialect, the plan made for it, the session key it
    is stored under, and what the turn tells that upstream. Failover makes a new one."""

    def __init__(self, routed: Routed, route: Route, dialect: Dialect, plan: TurnPlan,
                 key: SessionKey, headers: Mapping[str, str], conversation: str) -> None:
        self._routed, self._route = routed, route
        self.dialect, self.plan, self.key = dialect, plan, key
        self.headers = headers  # the session key, for routers in front of the engines
        self._conversation = conversation  # the engine's cache keeper knows it so

    @property
    def name(self) -> str:
        return self._route.upstream

    @property
    def engine(self) -> str:
        """What serves there, as errors name it (``gen_ai.provider.name`` in traces)."""
        return self._backend.server_name

    @property
    def _backend(self) -> Backend:
        return self._route.backend

    @property
    def movable(self) -> bool:
        """Another upstream may take the turn if this one fails before its first token."""
        return self._routed.router.several

    async def prepare(self) -> None:
        """Wait while the model is being (re)loaded; raise if that failed. An engine that
        was not running when the turn was planned (one lmsd starts on demand) is planned
        for again, in the dialect it speaks now that it answers."""
        backend = self._backend
        await backend.wait_ready(self._route.model)
        if started_by_lmsd(backend):
            # Just started (or as before): its slots are learned before this turn takes
            # one, so the turn pins its slot and restores its file from before a swap.
            with suppress(httpx.HTTPError):
                await backend.keeper.learn()
        if self.dialect.why == UNDECIDED and self._routed.conv is not None:
            again = await self._routed.bind(self._routed.conv)
            self.dialect, self.plan = again.dialect, again.plan

    def lease(self) -> AbstractContextManager[Any]:
        """Count the turn in flight on its upstream while it runs."""
        return self._route.lease()

    def recall(self, body: dict[str, Any]) -> Failure | None:
        """The failure the engine gave moments ago for the same request (its resend)."""
        return self._backend.recall_failure(self.key, self._route.model, body, self.plan.full)

    def keep(self, body: dict[str, Any]) -> AbstractAsyncContextManager[dict[str, Any]]:
        """Around one upstream request: the body to send (the engine's slot chosen, saved
        and restored around it: ``upstreams/cache/keeper.py``)."""
        return self._backend.keeper.turn(self._conversation, body, self.plan.full,
                                         path=self.dialect.endpoint,
                                         can_pin=self.dialect.reads_id_slot)

    def stream(self, body: dict[str, Any], *, message_id: str
               ) -> AbstractAsyncContextManager[Batches]:
        """The upstream's answer to ``body``, in pivot events."""
        return self.dialect.stream(body, message_id=message_id, headers=self.headers or None)

    def succeeded(self) -> None:
        """The upstream answered: it is healthy."""
        self._backend.succeeded()

    def unwell(self, error: Failure) -> None:
        """The upstream failed in a way that says it is unwell (``exchange.UNWELL``)."""
        self._backend.failed(error, trio.current_time())

    def chaining_refused(self) -> None:
        """The engine keeps no stored responses: full history from now on."""
        self._backend.refuse_chaining()

    def ended(self, failure: Failure | None, sent: dict[str, Any] | None,
              usage: Usage | None, expected: int | None) -> None:
        """What the finished turn teaches the upstream: the limit an overflow stated,
        the failure its resend will meet (``sent``: the body the engine refused; None
        when it was not asked), and what the engine prefilled (a cache miss explained;
        ``expected``: what a chained turn prefills by design)."""
        backend, model = self._backend, self._route.model
        if isinstance(failure, ContextOverflow) and failure.context_limit:
            backend.learn_limit(model, failure.context_limit)
        if failure is not None and sent is not None:
            backend.note_failure(self.key, model, sent, self.plan.full, failure)
        if failure is None:
            backend.keeper.prefilled(self._conversation, usage, expected)

    async def failover(self, error: Failure) -> Binding | None:
        """Another upstream for this turn, planned in full there; None if none."""
        return await self._routed.failover(error)


@dataclass
class Routed:
    """One request's way upstream: placed by the router, planned for the upstream it
    landed on (a chain never crosses upstreams), and moved when that one fails before
    the first token (``failover``)."""

    router: Router
    store: SessionStore
    requested: str  # the model the client asked for
    session: str
    agent: str = "main"
    override: str | None = None  # the session's configured model
    lenient: bool = False  # an unknown model name goes to the default one (Codex)
    adjust: Callable[[TurnPlan], None] | None = None  # a front's last touch to a plan
    side: bool | None = None  # a side request (a title): None, judged by the model's name
    route: Route | None = None
    conv: Conversation | None = None

    async def place(self, *, probe: bool = True) -> Route:
        """Where the request goes (``probe=False``: not a recovering upstream's probe, for
        a request that reports no outcome, like a token count)."""
        router, key = self.router, (self.session, self.agent)
        holder = None  # looked up only where it can matter: several, and not pinned yet
        if router.several and router.placement.pinned(key) is None:
            holder = self.store.holder(self.session, self.agent)
        self.route = await router.route(
            self.requested, session=self.session, agent=self.agent, override=self.override,
            lenient=self.lenient, holder=holder, probe=probe, background=self.background)
        return self.route

    @property
    def background(self) -> bool:
        """A side request: it takes the background key and route, not the session's."""
        return self.side if self.side is not None else is_background(self.requested)

    @property
    def backend(self) -> Backend:
        assert self.route is not None, "place() first"
        return self.route.backend

    async def bind(self, conv: Conversation) -> Binding:
        """The plan for ``conv`` on the placed upstream, bound to it."""
        self.conv = conv
        route, backend = self.route, self.backend
        assert route is not None
        dialect = await backend.dialect()
        note_binding(self.session, self.agent, dialect)
        key = (self.session, self.agent, route.model)
        stored = self.store.nodes(key)
        nodes = [n for n in stored if n.upstream == backend.name or
                 (not n.upstream and backend is self.router.backends[0])]
        session_key = self.session if self.agent == "main" else f"{self.session}/{self.agent}"
        conversation = BACKGROUND if self.background else f"{self.session}/{self.agent}"
        if started_by_lmsd(backend) and not self.background:
            # Each started model is its own engine: the conversation keeps its slot and
            # file there while the session works on another model, for when it returns.
            conversation += f"@{route.model}"
        plan = dialect.plan(conv, model=route.model, nodes=nodes, chaining=backend.chaining,
                            session=session_key)
        if plan.node is None and len(nodes) < len(stored) and plan.miss == "no_node":
            plan.miss = "moved_upstream"  # its chain is on another upstream
        if self.adjust is not None:
            self.adjust(plan)
        headers = {h: session_key for h in self.router.settings.affinity_headers}
        return Binding(self, route, dialect, plan, key, headers, conversation)

    async def failover(self, error: Failure) -> Binding | None:
        """Another upstream for this request, planned in full there; None if none."""
        assert self.route is not None and self.conv is not None
        moved = await self.router.failover(
            self.route, error, self.requested, session=self.session, agent=self.agent,
            override=self.override, lenient=self.lenient, background=self.background)
        if moved is None:
            return None
        self.route = moved
        return await self.bind(self.conv)

    def upstream_fields(self) -> dict[str, Any]:
        """What ``request.start`` says about the upstream (with several: which, and why)."""
        assert self.route is not None, "place() first"
        if self.route.choice.why == "only":
            return {}
        return {"upstream": self.route.upstream, "placed": self.route.choice.why}
