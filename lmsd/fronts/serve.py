"""What every front does with a request: read its body, refuse a prompt that cannot fit,
build the exchange with the router's hooks, and answer with a stream or the whole answer."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio
from quart import Response, request

from ..asgi import json_response
from ..config import Settings
from ..exchange import REPAIRED_CALL_PREFIX, Binding, Exchange, Reply
from ..log import event
from ..protocol.anthropic.request import parse_json
from ..protocol.failures import Failure, UnsupportedMedia, UpstreamBroken
from ..protocol.fit import check_fit, wants_exact_count
from ..protocol.pivot import Conversation
from ..protocol.plan import TurnPlan
from ..protocol.repair import ToolCallRepair
from ..protocol.repair.split import SplitRepair
from ..sessions.store import SessionStore
from ..upstreams.cache.slots import BACKGROUND
from ..upstreams.router import Backend, Route, Router, is_background
from ..upstreams.tap import note_binding
from .drain import Drain
from .event_stream import EventStream, stream_response


def repair_for(settings: Settings, conv: Conversation) -> SplitRepair | None:
    """The filter that turns a call of one of ``conv``'s declared tools, printed as text,
    into a real call; none when ``repair_tool_calls`` is off or no call may be made.
    Its call ids are unique per turn (the filter numbers calls from 1 in each answer, and
    a conversation holds many answers): ``call_lmsd_<random>_<n>``."""
    if not settings.repair_tool_calls or not conv.tools or (
            conv.tool_choice is not None and conv.tool_choice.mode == "none"):
        return None
    return SplitRepair(ToolCallRepair(
        conv.tools, call_id_prefix=f"{REPAIRED_CALL_PREFIX}{secrets.token_hex(6)}_"))


@dataclass
class Routed:
    """One request's way upstream: placed by the router, planned for the upstream it
    landed on (a chain never crosses upstreams), and moved when that one fails before
    the first token (``failover``)."""

    settings: Settings
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
        """The plan for ``conv`` on the placed upstream, with that upstream's hooks."""
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
        plan = dialect.plan(conv, model=route.model, nodes=nodes, chaining=backend.chaining,
                            session=session_key)
        if plan.node is None and len(nodes) < len(stored) and plan.miss == "no_node":
            plan.miss = "moved_upstream"  # its chain is on another upstream
        if self.adjust is not None:
            self.adjust(plan)
        return Binding(
            backend.name, dialect, plan, key,
            headers={h: session_key for h in self.settings.affinity_headers},
            prepare=partial(backend.wait_ready, route.model),
            on_chaining_refused=backend.refuse_chaining,
            on_overflow=partial(backend.learn_limit, route.model), lease=route.lease,
            on_success=backend.succeeded,
            on_unwell=lambda error: backend.failed(error, trio.current_time()),
            keep=partial(backend.keeper.turn, conversation, path=dialect.endpoint,
                         can_pin=dialect.reads_id_slot),
            on_usage=partial(backend.keeper.prefilled, conversation),
            recall=partial(backend.recall_failure, key, route.model),
            note=partial(backend.note_failure, key, route.model))

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


def upstream_fields(route: Route) -> dict[str, Any]:
    """What ``request.start`` says about the upstream (with several: which, and why)."""
    if route.choice.why == "only":
        return {}
    return {"upstream": route.upstream, "placed": route.choice.why}


def new_exchange(routed: Routed, binding: Binding, reply: Reply, *, front: str,
                 stream: bool, repair: SplitRepair | None = None) -> Exchange:
    """The exchange for one planned turn: it waits for a model reload of its own model,
    tells its upstream when chaining is refused, teaches it the limit an overflow states,
    moves to another upstream when its own fails before the first token (several
    upstreams), and repairs tool calls printed as text with ``repair`` (``repair_for``)."""
    exchange = Exchange(binding.dialect, binding.plan, reply, store=routed.store,
                        key=binding.key, front=front, stream=stream, repair=repair)
    exchange.bind(binding)
    if routed.router.several:
        exchange.failover = routed.failover
    return exchange


async def answer(exchange: Exchange, drain: Drain, ping_interval: float, *,
                 encode: Callable[[list[Any]], bytes], ping: bytes,
                 max_bytes: int = 32 * 1024 * 1024) -> Response:
    """A streamed answer, or (``stream: false``) the whole one once the exchange ends. The
    whole one is held in memory: past ``max_bytes`` (max_body_bytes; counted as the
    stream's bytes would be) the exchange is stopped, which stops the upstream too, and
    the client is told why (an upstream that never ends would otherwise grow lmsd)."""
    if exchange.stream:
        return stream_response(EventStream(exchange, drain, ping_interval, encode=encode,
                                           ping=ping))
    held = 0

    with trio.CancelScope() as too_large:
        async def discard(events: list[Any]) -> None:
            nonlocal held  # the reply keeps what the whole answer needs; this counts it
            held += len(encode(events))
            if held > max_bytes:
                too_large.cancel()

        try:
            await exchange.run(discard)
        finally:
            exchange.log_end(cancelled=exchange.outcome == "pending")
    if too_large.cancelled_caught:
        raise UpstreamBroken(
            f"the answer grew past {max_bytes} bytes, the most lmsd holds for a request "
            f"with stream: false (max_body_bytes); the upstream was stopped there: ask with "
            f"stream: true, or a lower max_tokens")
    return json_response(exchange.reply.result())


async def read_json() -> Any:
    """The request's JSON body; a compressed one is refused by name."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedMedia(f"Content-Encoding {encoding!r} is not supported: send the "
                               f"JSON body uncompressed")
    return parse_json(await request.get_data(cache=False))


#: How long a close call waits for the engine's tokenizer before the response headers go
#: out: a busy engine (one lock, a slot being restored) can hold it for a whole answer, and
#: a client that sees no headers in its first-byte window resends (Claude Code 2.1.337's
#: ``CLAUDE_STREAM_FIRST_BYTE_TIMEOUT_MS``), a second prefill. Past it the estimate decides.
EXACT_COUNT_WAIT = 1.0


async def refuse_if_too_long(backend: Backend, model: str, estimate: int, *, front: str,
                             text: Callable[[], str]) -> None:
    """Refuse a prompt that cannot fit the loaded context before sending it: the client
    compacts at once and the engine spends no prefill on it. Where the engine has its own
    tokenizer, it settles a close call (``text()`` is what it counts) if it answers within
    ``EXACT_COUNT_WAIT``."""
    limit = backend.context_limit(model)
    exact = None
    if wants_exact_count(estimate, limit) and (await backend.dialect()).counts_tokens:
        with trio.move_on_after(EXACT_COUNT_WAIT) as waited:
            exact = await backend.count_tokens(text(), model=model)
        if waited.cancelled_caught:
            event("request.count_skipped", level=30, front=front, model=model,
                  upstream=backend.name, waited_s=EXACT_COUNT_WAIT,
                  action="the engine's tokenizer is busy: the estimate decides")
    error = check_fit(estimate, limit, exact)
    if error is not None:
        event("request.too_long", level=30, front=front, model=model, context_length=limit,
              estimate_tokens=estimate, counted_tokens=exact, upstream=backend.name,
              action="refused before sending")
        raise error
