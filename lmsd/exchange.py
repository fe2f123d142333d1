"""One proxied turn, for any front: send the planned request to the upstream the turn is
bound to, feed its pivot events to the front's reply, emit what the reply makes of them.

The same runner serves streamed and whole answers (the reply folds its events), so both
paths agree. A chained request that the upstream refuses before any content (its stored
response is gone, e.g. after a restart) is retried at once with the full history; the
client never sees that error. Before the first token, an unwell upstream's failure moves
the turn to another upstream where there is one (``Upstream.failover``).

With a tool-call repair filter (``protocol/repair``), every upstream event passes through
it before the reply sees it. What the finished turn leaves in the store (its chain node,
unless repaired; its counters) is ``sessions/turns.py``'s business.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from .log import event, logger
from .otel import RequestTrace, call, note
from .protocol.client_keys import client_of
from .protocol.failures import (
    STALE,
    UNSUPPORTED,
    ContextOverflow,
    Failure,
    Internal,
    ModelUnavailable,
    Overloaded,
    StaleChain,
    Unreachable,
    UpstreamAuth,
    UpstreamBroken,
    UpstreamTimeout,
)
from .protocol.pivot import Event, Failed, ToolCallStarted, Turn, Usage
from .protocol.plan import TurnPlan
from .protocol.servers.prefill import expected_prefill, prefill_fields
from .request_ids import request_id_for
from .sessions.store import SessionKey, SessionStore
from .sessions.turns import Outcome, remember_turn
from .upstreams.dialect import Batches
from .upstreams.wire import written_hook

Emit = Callable[[list[Any]], Awaitable[None]]
#: What makes a chained attempt worth retrying with the full history: only the upstream
#: saying the stored response is gone, or that it keeps no responses at all. Anything else
#: (a crash, a bad image, an overflow) would fail the same way in full, at the price of a
#: whole-history prefill, and the node LM Studio still holds must not be dropped for it.
RETRY_IN_FULL = (STALE, UNSUPPORTED)
#: Failures that say the upstream is unwell, not the request: counted against its health,
#: and (before the first token) worth the next upstream. A refused request, an overflow
#: or a bad image would fail the same way anywhere.
UNWELL = (Unreachable, UpstreamTimeout, Overloaded, UpstreamBroken, ModelUnavailable,
          UpstreamAuth)
class Upstream(Protocol):
    """The upstream a turn is bound to, as the runner sees it (``upstreams/routed.py``'s
    ``Binding``): its name, the plan made for it, the session key, and the few calls a
    turn makes. A failover swaps it for another."""

    plan: TurnPlan
    key: SessionKey

    @property
    def name(self) -> str: ...
    @property
    def movable(self) -> bool: ...  # another upstream may take the turn
    async def prepare(self) -> None: ...  # e.g. wait for a model reload
    def lease(self) -> AbstractContextManager[Any]: ...  # counts the turn in flight
    def recall(self, body: dict[str, Any]) -> Failure | None: ...  # a resend's answer
    #: The body to send, the engine's slot steered around it.
    def keep(self, body: dict[str, Any]) -> AbstractAsyncContextManager[dict[str, Any]]: ...
    def stream(self, body: dict[str, Any], *, message_id: str
               ) -> AbstractAsyncContextManager[Batches]: ...
    def succeeded(self) -> None: ...
    def unwell(self, error: Failure) -> None: ...  # see UNWELL
    def chaining_refused(self) -> None: ...
    def ended(self, failure: Failure | None, sent: dict[str, Any] | None,
              usage: Usage | None, expected: int | None) -> None: ...
    async def failover(self, error: Failure) -> Upstream | None: ...


class _StaleChain(Exception):
    """The upstream refused the chained request (its stored response is gone, or it
    keeps none) before producing anything."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Reply(Protocol):
    """A front's side of one exchange: pivot events in, its client's events out, and what
    the client now holds (``protocol/anthropic/reply.py`` is Claude Code's)."""

    message_id: str
    model: str
    output_started: bool  # the first content went out (time to first token)

    @property
    def done(self) -> bool: ...
    @property
    def failure(self) -> Failure | None: ...
    @property
    def response_id(self) -> str | None: ...
    @property
    def upstream_usage(self) -> Usage | None: ...
    @property
    def cut_short(self) -> bool: ...
    @property
    def chainable(self) -> bool: ...
    def start(self) -> list[Any]: ...
    def feed(self, event: Event) -> list[Any]: ...
    def finish(self) -> list[Any]: ...
    def fail(self, error: Failure) -> list[Any]: ...
    def turn(self) -> Turn: ...
    def log_fields(self) -> dict[str, Any]: ...
    def result(self) -> Any: ...


class Repair(Protocol):
    """A filter between the upstream and the reply: ``protocol/repair``'s ToolCallRepair
    (tool calls printed as text become real calls)."""

    repairs: list[str]  # the format of each repaired call, in order

    def feed(self, event: Event) -> list[Event]: ...
    def finish(self) -> list[Event]: ...


#: The call ids the repair filter gives: a call that starts so is one lmsd made.
REPAIRED_CALL_PREFIX = "call_lmsd_"


@dataclass
class Exchange:
    """One request's turn: the upstream it is bound to (and the plan made there), the
    front's reply, and what the runner, the store and the logs learn while it runs."""

    upstream: Upstream
    reply: Reply
    store: SessionStore | None = None
    front: str = "anthropic"  # which API the client spoke (events, metrics, sessions)
    stream: bool = True
    repair: Repair | None = None  # turns tool calls printed as text into real ones
    started_at: float = field(default_factory=trio.current_time)
    first_token_at: float | None = None
    upstream_first_at: float | None = None
    outcome: str = "pending"
    chained: bool = False
    stale: bool = False
    repaired_tools: list[str] = field(default_factory=list)  # each repaired call's tool
    failovers: list[str] = field(default_factory=list)  # upstreams it moved away from
    sent: dict[str, Any] | None = None  # the last body that went to the engine
    recalled: bool = False  # answered from what the engine said of the same request
    trace: RequestTrace | None = None  # its span, while tracing is on (``otel.py``)
    #: Set once the request is written upstream, or the turn ended without writing one.
    written: trio.Event = field(default_factory=trio.Event)

    @property
    def plan(self) -> TurnPlan:
        return self.upstream.plan

    @property
    def key(self) -> SessionKey:
        return self.upstream.key

    async def run(self, emit: Emit) -> None:
        """Drive the upstream stream to the end; never raises except on cancellation."""
        hooked = written_hook.set(self.written.set)
        try:
            await self._run(emit)
        finally:
            written_hook.reset(hooked)
            self.written.set()

    async def _run(self, emit: Emit) -> None:
        while True:
            with self.upstream.lease():
                moved = await self._run_here(emit)
            if moved is None:
                break
            self.upstream = moved
        failure = self.reply.failure
        self.outcome = "error" if failure else "ok"
        sent = self.plan.delta if self.chained and self.plan.delta is not None else {}
        self.upstream.ended(failure, None if self.recalled else self.sent,
                            self.upstream_usage, expected_prefill(sent))
        self._log_repairs()
        if self.store is not None:
            reply, repaired = self.reply, len(self.repairs)
            answer = reply.turn() if reply.chainable and not repaired else None
            await remember_turn(self.store, self.key, self.plan, Outcome(
                reply.message_id, self.front, self.upstream.name,
                chained=self.chained and not self.stale, stale=self.stale, answer=answer,
                response_id=reply.response_id, repaired=repaired,
                usage=self.upstream_usage))

    async def _run_here(self, emit: Emit) -> Upstream | None:
        """Run the turn on the bound upstream; another to move to when it failed before
        anything reached the client and another upstream can take it."""
        reply = self.reply
        out: list[Any] = []
        try:
            await self.upstream.prepare()
            bodies = self.plan.bodies  # after: a turn is planned again once its engine is up
        except Failure as exc:
            if (moved := await self._moved(exc)) is not None:
                return moved
            bodies = []
            out = reply.fail(exc)
        for attempt, body in enumerate(bodies):
            self.chained = "previous_response_id" in body
            retry_allowed = self.chained and attempt + 1 < len(bodies)
            try:
                out = await self._attempt(body, emit, retry_allowed)
                if reply.failure is None:
                    self.upstream.succeeded()
                break
            except _StaleChain as stale:
                self.stale = True
                event("chain.stale", level=30, id=reply.message_id, session=self.key[0],
                      previous_response_id=body.get("previous_response_id"), why=stale.kind,
                      action="retrying with the full history")
                note(self.trace, "retry", cause=stale.kind, upstream=self.upstream.name)
                if stale.kind == UNSUPPORTED:
                    self.upstream.chaining_refused()  # e.g. llama.cpp's stateless Responses
                elif self.plan.node is not None and self.store is not None:
                    await self.store.drop_node(self.plan.node.response_id)
            except Failure as exc:
                if (moved := await self._moved(exc)) is not None:
                    return moved
                out = self._flush_repair() + reply.fail(exc)  # partial text, then the error
                break
            except Exception as exc:  # a bug of ours: report it, keep the daemon serving
                logger.exception("request.internal_error id=%s", reply.message_id)
                out = reply.fail(Internal(f"lmsd internal error: {exc!r}"))
                break
        if out:
            await self._emit(out, emit)
        return None

    async def _moved(self, error: Failure) -> Upstream | None:
        """Count an unwell upstream's failure; before the first token, ask for another."""
        if not isinstance(error, UNWELL):
            return None
        self.upstream.unwell(error)
        if not self.upstream.movable or self.first_token_at is not None or \
                self.reply.output_started:
            return None
        moved = await self.upstream.failover(error)
        if moved is not None:
            note(self.trace, "failover", cause=error.kind, upstream=self.upstream.name,
                 to=moved.name)
            self.failovers.append(self.upstream.name)
            self.stale = False
        return moved

    async def _emit(self, events: list[Any], emit: Emit) -> None:
        if self.first_token_at is None and self.reply.output_started:
            self.first_token_at = trio.current_time()
        await emit(events)

    async def _attempt(self, body: dict[str, Any], emit: Emit, retry_allowed: bool
                       ) -> list[Any]:
        if known := self.upstream.recall(body):
            self.recalled = True  # a resend of what the engine refused: not sent again
            event("request.resend_answered", level=30, id=self.reply.message_id,
                  session=self.key[0], model=self.key[2], kind=known.kind,
                  upstream=self.upstream.name or None,
                  action="answered without the engine (it refused the same request)")
            raise known
        self.sent = body
        async with self.upstream.keep(body) as sent:
            with call(self.trace, upstream=self.upstream.name, model=sent.get("model"),
                      engine=getattr(self.upstream, "engine", None)):
                return await self._stream(sent, emit, retry_allowed)

    async def _stream(self, body: dict[str, Any], emit: Emit, retry_allowed: bool
                      ) -> list[Any]:
        reply = self.reply
        stream = self.upstream.stream(body, message_id=reply.message_id)
        try:
            async with stream as batches:
                async for batch in batches:
                    if self.upstream_first_at is None:
                        self.upstream_first_at = trio.current_time()
                    out: list[Any] = []
                    for pivot_event in batch:
                        if self.first_token_at is None and not out and \
                                isinstance(pivot_event, Failed):
                            if retry_allowed and isinstance(pivot_event.error, StaleChain):
                                raise _StaleChain(pivot_event.error.kind)
                            if self.upstream.movable and \
                                    isinstance(pivot_event.error, UNWELL):
                                raise pivot_event.error  # before any output: failover
                        for repaired in self._repaired(pivot_event):
                            out += reply.feed(repaired)
                    if out:
                        await self._emit(out, emit)
                    if reply.cut_short:
                        break  # lmsd ended the turn: closing the stream stops generation
                # Otherwise the body is read to its end (just the terminator after
                # response.completed), so httpx can pool the connection.
        except Failure as exc:
            if retry_allowed and exc.kind in RETRY_IN_FULL and self.first_token_at is None:
                raise _StaleChain(exc.kind) from None
            raise
        return self._flush_repair() + reply.finish()

    def _flush_repair(self) -> list[Any]:
        """The text the repair filter held when the stream ended without Finished."""
        out: list[Any] = []
        for held in self.repair.finish() if self.repair is not None else ():
            out += self.reply.feed(held)
        return out

    def _repaired(self, pivot_event: Event) -> list[Event]:
        """The event through the repair filter, if any; notes the tools of calls it made."""
        if self.repair is None:
            return [pivot_event]
        events = self.repair.feed(pivot_event)
        self.repaired_tools += [e.name for e in events if isinstance(e, ToolCallStarted)
                                and e.call_id.startswith(REPAIRED_CALL_PREFIX)]
        return events

    @property
    def upstream_usage(self) -> Usage | None:
        """The usage of the ``Finished`` event the upstream sent (its prefilled and cached
        tokens, when the engine said): None when none came."""
        return self.reply.upstream_usage

    @property
    def repairs(self) -> list[str]:
        return list(self.repair.repairs) if self.repair is not None else []

    def _log_repairs(self) -> None:
        reply = self.reply
        for n, fmt in enumerate(self.repairs):
            tool = self.repaired_tools[n] if n < len(self.repaired_tools) else None
            event("tool_call.repaired", id=reply.message_id,
                  request_id=request_id_for(reply.message_id), session=self.key[0],
                  agent=self.key[1], front=self.front, format=fmt, tool=tool)

    def log_end(self, *, cancelled: bool = False) -> None:
        reply = self.reply
        now = trio.current_time()
        fields: dict[str, Any] = {
            "id": reply.message_id,
            "request_id": request_id_for(reply.message_id),
            "session": self.key[0],
            **({"client": client} if (client := client_of(self.key[0])) else {}),
            "agent": self.key[1],
            "model": reply.model,
            "upstream_model": self.plan.full.get("model"),
            "stream": self.stream,
            "outcome": "cancelled" if cancelled else self.outcome,
            "chained": self.chained and not self.stale,
            **({"upstream": self.upstream.name} if self.upstream.name else {}),
            **({"failover_from": self.failovers} if self.failovers else {}),
            "duration_ms": round((now - self.started_at) * 1000, 1),
        }
        if self.first_token_at is not None:
            fields["ttft_ms"] = round((self.first_token_at - self.started_at) * 1000, 1)
        if self.upstream_first_at is not None:
            fields["upstream_ms"] = round((self.upstream_first_at - self.started_at) * 1000, 1)
        if isinstance(reply.failure, ContextOverflow):
            fields["overflow"] = True  # every front words it its own way
        fields.update(prefill_fields(self.upstream_usage))  # what the engine prefilled
        fields.update(reply.log_fields())
        event("request.end", level=30 if reply.failure else 20, **fields)
        if self.trace is not None:
            self.trace.end(fields, repairs=self.repairs, failed=reply.failure is not None)
