"""One turn, written once for every front: read the body, validate it in the front's
dialect, name the session, apply its config (model, allowed tools) and ``max_tokens_cap``,
place it upstream, refuse a prompt that cannot fit, plan it, build the front's reply, log
``request.start``, and answer with a stream or the whole answer (``serve.answer``).

A front supplies what its API says differently (``Front``): how a request is read and
where its session is named (``ask``), a last touch before the plan (``shape``), its reply
and encoder, and its errors (``render``). hypercorn writes its request cycle once per
protocol the same way.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import trio
from quart import Response, request

from ..asgi import Rendered
from ..config.sections import FrontSettings
from ..exchange import REPAIRED_CALL_PREFIX, Exchange, Reply
from ..log import event
from ..otel import RequestTrace, start_request
from ..protocol.failures import Failure
from ..protocol.fit import check_fit, wants_exact_count
from ..protocol.pivot import Conversation
from ..protocol.plan import TurnPlan
from ..protocol.repair import ToolCallRepair
from ..protocol.repair.split import SplitRepair
from ..protocol.tokens import conversation_text, conversation_tokens
from ..request_ids import current as current_request_id
from ..request_ids import new_request_id
from ..sessions.store import SessionStore
from ..upstreams.routed import Routed
from ..upstreams.router import Backend, Router
from .client_keys import client_fields, session_for
from .drain import Drain
from .serve import answer, read_json

R = TypeVar("R")
#: The session of a request that names none (OpenAI clients): its chains are found by
#: their history among this session's.
DEFAULT_SESSION = "default"


@dataclass
class Asked(Generic[R]):
    """A client's request as the turn needs it, read by its front: ``request`` is the
    front's own validated request, for its reply."""

    request: R
    model: str  # the model the client asked for
    conv: Conversation  # what goes upstream (the flow applies the cap and allowed tools)
    stream: bool
    session: str  # in the client's namespace (``client_keys.session_for``)
    agent: str = "main"
    side: bool | None = None  # a side request (a title); None: judged by the model's name
    lenient: bool = False  # a model name upstream does not list goes to the default one
    estimate: int | None = None  # the prompt's tokens; None: the conversation as sent
    text: Callable[[], str] | None = None  # what a tokenizer counts; None: as sent
    log: dict[str, Any] = field(default_factory=dict)  # request.start's own fields
    repair: bool = True  # tool calls printed as text may be repaired (``repair_for``)
    capped: bool = False  # lmsd lowered max_tokens to ``max_tokens_cap``


@dataclass(frozen=True)
class Placed:
    """Where the turn went, for the front's reply."""

    request_id: str
    model: str  # the model id upstream
    server_name: str  # how errors name the upstream server ("LM Studio")
    estimate: int  # the prompt's tokens as estimated


class Front(ABC, Generic[R]):
    """What one API says its own way; the turn does the rest."""

    name: str  # the ``front`` of events, metrics and session counters
    ping: bytes  # the keep-alive its stream sends while the upstream is silent

    @abstractmethod
    def encode(self, events: list[Any]) -> bytes:
        """The reply's events as stream bytes."""

    @abstractmethod
    async def ask(self, body: Any, path_id: str | None) -> Asked[R]:
        """``body`` validated in this API's terms (a 400 that names the field), with its
        session (``path_id``: the ``/session/ID/`` route's)."""

    def shape(self, asked: Asked[R], model: str) -> Callable[[TurnPlan], None] | None:
        """A last touch once placed on ``model``: may change ``asked.conv``; may return a
        change to the plan made from it."""
        return None

    @abstractmethod
    def reply(self, asked: Asked[R], placed: Placed) -> Reply:
        """The reply that turns pivot events into this API's events."""

    @abstractmethod
    def render(self, failure: Failure) -> Rendered:
        """A failure before the stream, as this API's clients read it."""


async def run_turn(front: Front[Any], settings: FrontSettings, router: Router,
                   store: SessionStore, drain: Drain, path_id: str | None = None
                   ) -> Response:
    """One request of ``front``'s, from its body to its answer."""
    exchange = await start_turn(front, settings, router, store, path_id)
    return await answer(exchange, drain, settings.ping_interval, encode=front.encode,
                        ping=front.ping, max_bytes=settings.max_body_bytes)


async def start_turn(front: Front[Any], settings: FrontSettings, router: Router,
                     store: SessionStore, path_id: str | None) -> Exchange:
    """Validate, map the model, check the fit, plan the turn (full or chained): the
    exchange to run. Traced (``otel.py``): the span begins here, continuing the client's
    ``traceparent``; a request refused before its turn ends it."""
    trace = start_request(request.headers, front=front.name)
    try:
        return await _start_turn(front, settings, router, store, path_id, trace)
    except BaseException as exc:
        if trace is not None:
            trace.refused(exc)
        raise


async def _start_turn(front: Front[Any], settings: FrontSettings, router: Router,
                      store: SessionStore, path_id: str | None, trace: RequestTrace | None
                      ) -> Exchange:
    asked = await front.ask(await read_json(), path_id)
    conv, cap = asked.conv, settings.max_tokens_cap
    if cap and conv.max_output_tokens is not None and conv.max_output_tokens > cap:
        conv = replace(conv, max_output_tokens=cap)  # a local model must not run for an hour
        asked.capped = True
    config = store.config(session_for(path_id) if path_id else None, asked.session)
    if config.allowed_tools is not None:
        conv = replace(conv, tools=tuple(t for t in conv.tools
                                         if t.name in config.allowed_tools))
    asked.conv = conv
    routed = Routed(router, store, asked.model, asked.session, asked.agent,
                    override=config.model, lenient=asked.lenient, side=asked.side)
    route = await routed.place()
    estimate = asked.estimate if asked.estimate is not None else conversation_tokens(conv)
    await refuse_if_too_long(route.backend, route.model, estimate, front=front.name,
                             text=asked.text or (lambda: conversation_text(conv)))
    routed.adjust = front.shape(asked, route.model)
    binding = await routed.bind(asked.conv)
    plan = binding.plan
    request_id = current_request_id() or new_request_id()
    reply = front.reply(asked, Placed(request_id, route.model, route.backend.server_name,
                                      estimate))
    event("request.start", id=reply.message_id, request_id=request_id, front=front.name,
          session=asked.session, **client_fields(), agent=asked.agent, model=asked.model,
          upstream_model=route.model, stream=asked.stream, **asked.log,
          estimate_tokens=estimate,
          chain=plan.node.response_id if plan.node else None, chain_miss=plan.miss,
          **routed.upstream_fields())
    if trace is not None:
        trace.placed(asked.model, route.model, asked.session, asked.agent)
    return Exchange(binding, reply, store=store, front=front.name, stream=asked.stream,
                    repair=repair_for(settings, asked.conv) if asked.repair else None,
                    trace=trace)


def repair_for(settings: FrontSettings, conv: Conversation) -> SplitRepair | None:
    """The filter that turns a call of one of ``conv``'s declared tools, printed as text,
    into a real call; none when ``repair_tool_calls`` is off or no call may be made.
    Its call ids are unique per turn (the filter numbers calls from 1 in each answer, and
    a conversation holds many answers): ``call_lmsd_<random>_<n>``."""
    if not settings.repair_tool_calls or not conv.tools or (
            conv.tool_choice is not None and conv.tool_choice.mode == "none"):
        return None
    return SplitRepair(ToolCallRepair(
        conv.tools, call_id_prefix=f"{REPAIRED_CALL_PREFIX}{secrets.token_hex(6)}_"))


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
