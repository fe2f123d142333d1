"""One proxied turn, for any front: send the planned request through the upstream's
dialect, feed its pivot events to the front's reply, emit what the reply makes of them.

The same runner serves streamed and whole answers (the reply folds its events), so both
paths agree. A chained request that the upstream refuses before any content (its stored
response is gone, e.g. after a restart) is retried at once with the full history; the
client never sees that error.

With a tool-call repair filter (``protocol/repair``), every upstream event passes through
it before the reply sees it. A repaired answer holds a call LM Studio never produced, so
it is not stored as a chain node: the next turn chains from the node before it and sends
the repaired ``function_call`` (lmsd's call id) and its output as new items, a history in
which the call really happened and nothing LM Studio stores is contradicted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    nullcontext,
)
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from .log import event, logger
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
from .protocol.plan import TurnPlan, next_node
from .protocol.prefill import expected_prefill, prefill_fields
from .request_ids import request_id_for
from .sessions.store import SessionKey, SessionStore
from .upstreams.dialect import Dialect

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
#: Around one upstream request: the body in, the body to send out (llama-server's slot
#: chosen, saved and restored around it: ``upstreams/cache/keeper.py``).
Keep = Callable[[dict[str, Any], dict[str, Any]],
                AbstractAsyncContextManager[dict[str, Any]]]


@asynccontextmanager
async def _as_is(body: dict[str, Any], full: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """No engine to steer: the body goes as it is."""
    yield body


@dataclass
class Binding:
    """Where an exchange sends its turn: one upstream, its dialect, the plan made for it
    (a chain never crosses upstreams), and that upstream's hooks. Failover swaps it."""

    upstream: str
    dialect: Dialect
    plan: TurnPlan
    key: SessionKey
    headers: Mapping[str, str] = field(default_factory=dict)
    prepare: Callable[[], Awaitable[None]] | None = None
    on_chaining_refused: Callable[[], None] | None = None
    on_overflow: Callable[[int], None] | None = None
    lease: Callable[[], AbstractContextManager[Any]] = nullcontext
    on_success: Callable[[], None] | None = None
    on_unwell: Callable[[Failure], None] | None = None
    keep: Keep = _as_is  # (body, full body) -> the body to send
    #: What the engine prefilled, and what a chained turn prefills by design.
    on_usage: Callable[[Usage | None, int | None], None] | None = None
    #: (body, full body) -> the failure a resend of it will meet (``protocol/resends.py``)
    recall: Callable[[dict[str, Any], dict[str, Any]], Failure | None] | None = None
    #: (body, full body, failure): remember what the engine said of this request
    note: Callable[[dict[str, Any], dict[str, Any], Failure], None] | None = None


class _StaleChain(Exception):
    """The upstream refused the chained request (its stored response is gone, or it
    keeps none) before producing anything."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Reply(Protocol):
    """A front's side of one exchange: pivot events in, its client's events out, and what
    the client now holds (``protocol/anthropic/answer.py`` is Claude Code's)."""

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
    """Everything about one request that the runner, the store and the logs need."""

    dialect: Dialect  # the upstream it is sent to, and how
    plan: TurnPlan
    reply: Reply
    store: SessionStore | None = None
    key: SessionKey = ("default", "main", "")
    front: str = "anthropic"  # which API the client spoke (events, metrics, sessions)
    stream: bool = True
    started_at: float = field(default_factory=trio.current_time)
    first_token_at: float | None = None
    outcome: str = "pending"
    chained: bool = False
    stale: bool = False
    prepare: Callable[[], Awaitable[None]] | None = None  # e.g. wait for a model reload
    on_chaining_refused: Callable[[], None] | None = None
    on_overflow: Callable[[int], None] | None = None  # learns the limit an engine stated
    upstream_first_at: float | None = None
    repair: Repair | None = None  # turns tool calls printed as text into real ones
    repaired_tools: list[str] = field(default_factory=list)  # each repaired call's tool
    upstream: str = ""  # the upstream's name (several upstreams: where it went)
    headers: Mapping[str, str] = field(default_factory=dict)  # the session key for routers
    lease: Callable[[], AbstractContextManager[Any]] = nullcontext  # counts it in flight
    on_success: Callable[[], None] | None = None  # the upstream answered: it is healthy
    on_unwell: Callable[[Failure], None] | None = None  # the upstream failed (see UNWELL)
    #: Before the first token, an unwell upstream's failure asks for another binding.
    failover: Callable[[Failure], Awaitable[Binding | None]] | None = None
    failovers: list[str] = field(default_factory=list)  # upstreams it moved away from
    keep: Keep = _as_is  # the engine's slot around each request (``Binding.keep``)
    on_usage: Callable[[Usage | None, int | None], None] | None = None  # a miss explained
    recall: Callable[[dict[str, Any], dict[str, Any]], Failure | None] | None = None
    note: Callable[[dict[str, Any], dict[str, Any], Failure], None] | None = None
    sent: dict[str, Any] | None = None  # the last body that went to the engine
    recalled: bool = False  # answered from what the engine said of the same request

    def bind(self, binding: Binding) -> None:
        """Send the turn through ``binding`` from now on."""
        self.upstream, self.dialect, self.plan, self.key = (
            binding.upstream, binding.dialect, binding.plan, binding.key)
        self.headers, self.prepare, self.lease = binding.headers, binding.prepare, binding.lease
        self.on_chaining_refused, self.on_overflow = (binding.on_chaining_refused,
                                                      binding.on_overflow)
        self.on_success, self.on_unwell = binding.on_success, binding.on_unwell
        self.keep, self.on_usage = binding.keep, binding.on_usage
        self.recall, self.note = binding.recall, binding.note

    async def run(self, emit: Emit) -> None:
        """Drive the upstream stream to the end; never raises except on cancellation."""
        while True:
            with self.lease():
                moved = await self._run_here(emit)
            if moved is None:
                break
            self.bind(moved)
        failure = self.reply.failure
        if isinstance(failure, ContextOverflow) and failure.context_limit and \
                self.on_overflow is not None:
            self.on_overflow(failure.context_limit)
        if failure is not None and self.sent is not None and self.note is not None and \
                not self.recalled:
            self.note(self.sent, self.plan.full, failure)
        self.outcome = "error" if failure else "ok"
        if self.on_usage is not None and failure is None:
            sent = self.plan.delta if self.chained and self.plan.delta is not None else {}
            self.on_usage(self.upstream_usage, expected_prefill(sent))
        self._log_repairs()
        await self._remember()

    async def _run_here(self, emit: Emit) -> Binding | None:
        """Run the turn on the bound upstream; a binding to move to when it failed before
        anything reached the client and another upstream can take it."""
        reply = self.reply
        out: list[Any] = []
        bodies = self.plan.bodies
        if self.prepare is not None:
            try:
                await self.prepare()
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
                if self.on_success is not None and reply.failure is None:
                    self.on_success()
                break
            except _StaleChain as stale:
                self.stale = True
                event("chain.stale", level=30, id=reply.message_id, session=self.key[0],
                      previous_response_id=body.get("previous_response_id"), why=stale.kind,
                      action="retrying with the full history")
                if stale.kind == UNSUPPORTED and self.on_chaining_refused is not None:
                    self.on_chaining_refused()  # e.g. llama.cpp's stateless /v1/responses
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

    async def _moved(self, error: Failure) -> Binding | None:
        """Count an unwell upstream's failure; before the first token, ask for another."""
        if not isinstance(error, UNWELL):
            return None
        if self.on_unwell is not None:
            self.on_unwell(error)
        if self.failover is None or self.first_token_at is not None or \
                self.reply.output_started:
            return None
        moved = await self.failover(error)
        if moved is not None:
            self.failovers.append(self.upstream)
            self.stale = False
        return moved

    async def _emit(self, events: list[Any], emit: Emit) -> None:
        if self.first_token_at is None and self.reply.output_started:
            self.first_token_at = trio.current_time()
        await emit(events)

    async def _attempt(self, body: dict[str, Any], emit: Emit, retry_allowed: bool
                       ) -> list[Any]:
        if self.recall is not None and (known := self.recall(body, self.plan.full)):
            self.recalled = True  # a resend of what the engine refused: not sent again
            event("request.resend_answered", level=30, id=self.reply.message_id,
                  session=self.key[0], model=self.key[2], kind=known.kind,
                  upstream=self.upstream or None,
                  action="answered without the engine (it refused the same request)")
            raise known
        self.sent = body
        async with self.keep(body, self.plan.full) as sent:
            return await self._stream(sent, emit, retry_allowed)

    async def _stream(self, body: dict[str, Any], emit: Emit, retry_allowed: bool
                      ) -> list[Any]:
        reply = self.reply
        stream = self.dialect.stream(body, message_id=reply.message_id,
                                     headers=self.headers or None)
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
                            if self.failover is not None and \
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

    async def _remember(self) -> None:
        """Store the answer as a chain node if it is complete; count the turn."""
        store, plan, reply = self.store, self.plan, self.reply
        if store is None:
            return
        chained = self.chained and not self.stale
        repaired = len(self.repairs)
        complete = reply.chainable and not repaired  # see the module docstring
        if complete:
            node = next_node(plan, reply.turn(), reply.response_id or "",
                             chained=chained)
            node.upstream = self.upstream
            await store.add_node(self.key, node)
        if chained and plan.node is not None:
            await store.touch(plan.node)
        items_sent, items_full, tokens_sent, tokens_full = plan.traffic(chained)
        miss = "stale_upstream" if self.stale else plan.miss
        unchained = plan.stateless and not chained  # by design: neither a hit nor a miss
        prefill = prefill_fields(self.upstream_usage)
        await store.record_turn(
            self.key, hit=chained, miss=None if chained else miss, unchained=unchained,
            items_sent=items_sent, items_full=items_full, tokens_sent=tokens_sent,
            tokens_full=tokens_full,
            response_id=reply.response_id if complete else None, front=self.front,
            repaired=repaired, upstream=self.upstream or None,
            prefilled=prefill.get("prefilled_tokens"), cached=prefill.get("cached_tokens"),
            prefill_ms=prefill.get("prefill_ms"))
        event("chain.decision", id=reply.message_id, session=self.key[0],
              agent=self.key[1], front=self.front, upstream=self.upstream or None,
              chained=chained,
              miss=None if chained else miss,
              **({"unchained": True} if unchained else {}),
              previous_response_id=plan.node.response_id if chained and plan.node else None,
              stored=complete, items_sent=items_sent, items_full=items_full,
              **({"repaired": repaired} if repaired else {}))

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
            **({"upstream": self.upstream} if self.upstream else {}),
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
