"""The Exchange against a test double of the upstream dialect: scripted event batches,
no HTTP. The dialect is the seam between one turn and the server behind it: it yields
pivot events, here decoded from scripted Responses events as the Responses dialect does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

from lmsd.exchange import Exchange
from lmsd.protocol.anthropic.encode import AnthropicEncoder
from lmsd.protocol.anthropic.items import conversation
from lmsd.protocol.anthropic.reply import AnthropicReply
from lmsd.protocol.anthropic.request import validate_messages_request
from lmsd.protocol.chain import ChainNode
from lmsd.protocol.failures import Failure, Unreachable
from lmsd.protocol.pivot import Conversation
from lmsd.protocol.plan import TurnPlan, plan_turn
from lmsd.protocol.responses.decode import ResponsesDecoder
from lmsd.sessions.store import SessionStore
from lmsd.upstreams.dialect import Batches, Dialect
from tests.support.upstream_streams import Text, lmstudio_events

KEY = ("s1", "main", "m")


class ScriptedDialect(Dialect):
    """Answers each body with the next scripted list of batches; records the bodies."""

    name = "scripted"
    chains = True

    def __init__(self, *answers: list[list[dict[str, Any]]] | Failure) -> None:
        super().__init__("a test double")
        self.answers = list(answers)
        self.sent: list[dict[str, Any]] = []

    def plan(self, conv: Conversation, *, model: str, nodes: Iterable[ChainNode],
             chaining: bool) -> TurnPlan:
        return plan_turn(conv, model=model, nodes=nodes, chaining=chaining)

    @asynccontextmanager
    async def stream(self, body: dict[str, Any], *, message_id: str, headers: Any = None
                     ) -> AsyncIterator[Batches]:
        self.sent.append(body)
        batches = self.answers.pop(0)
        if isinstance(batches, Failure):
            raise batches  # the upstream failed before answering
        decoder = ResponsesDecoder(message_id)

        async def gen() -> Batches:
            for batch in batches:
                yield [e for upstream in batch for e in decoder.feed(upstream)]

        yield gen()


class Direct:
    """The ``exchange.Upstream`` of a bare dialect: no engine to steer; it notes what the
    turn tells it, and moves to ``then`` (if any) when asked to fail over."""

    def __init__(self, dialect: Dialect, plan: TurnPlan, *, name: str = "",
                 then: Direct | None = None) -> None:
        self.dialect, self.plan, self.key = dialect, plan, KEY
        self.name, self.then, self.movable = name, then, then is not None
        self.told: list[tuple[Any, ...]] = []

    async def prepare(self) -> None:
        pass

    def lease(self) -> Any:
        return nullcontext()

    def recall(self, body: dict[str, Any]) -> None:
        return None

    @asynccontextmanager
    async def keep(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        yield body

    def stream(self, body: dict[str, Any], *, message_id: str
               ) -> AbstractAsyncContextManager[Batches]:
        return self.dialect.stream(body, message_id=message_id)

    def succeeded(self) -> None:
        self.told.append(("succeeded",))

    def unwell(self, error: Failure) -> None:
        self.told.append(("unwell", error.kind))

    def chaining_refused(self) -> None:
        self.told.append(("chaining_refused",))

    def ended(self, failure: Failure | None, sent: dict[str, Any] | None, *usage: Any
              ) -> None:
        self.told.append(("ended", failure and failure.kind, sent is not None))

    async def failover(self, error: Failure) -> Direct | None:
        self.told.append(("failover", error.kind))
        return self.then


def _exchange(dialect: Dialect, store: SessionStore, *texts: str) -> Exchange:
    messages: list[dict[str, Any]] = []
    for n, text in enumerate(texts):
        messages.append({"role": "user" if n % 2 == 0 else "assistant", "content": text})
    req = validate_messages_request({"model": "claude-x", "max_tokens": 100,
                                     "messages": messages})
    plan = dialect.plan(conversation(req), model="m", nodes=store.nodes(KEY),
                        chaining=dialect.chains)
    reply = AnthropicReply(AnthropicEncoder(message_id="msg_test", model="claude-x",
                                            input_tokens=5))
    return Exchange(Direct(dialect, plan), reply, store=store)


def _batches(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [events[i:i + 2] for i in range(0, len(events), 2)]


async def test_an_exchange_runs_on_a_scripted_dialect_and_retries_a_stale_chain():
    store = SessionStore(None)
    emitted: list[dict[str, Any]] = []

    async def emit(events: list[dict[str, Any]]) -> None:
        emitted.extend(events)

    first = lmstudio_events(Text("hello there"))
    dialect = ScriptedDialect(_batches(first))
    exchange = _exchange(dialect, store, "hi")
    await exchange.run(emit)
    assert exchange.outcome == "ok" and not exchange.chained
    assert [e["type"] for e in emitted][-2:] == ["message_delta", "message_stop"]
    text = "".join(e["delta"].get("text", "") for e in emitted
                   if e["type"] == "content_block_delta")
    assert text == "hello there"
    assert "previous_response_id" not in dialect.sent[0]

    # The next turn chains on the stored answer; the double says the stored response is
    # gone, so the exchange sends the full history at once and the client sees no error.
    stale = [[{"type": "error", "code": "previous_response_not_found",
               "message": "Previous response with id 'x' not found."}]]
    dialect = ScriptedDialect(stale, _batches(lmstudio_events(Text("again"))))
    emitted.clear()
    exchange = _exchange(dialect, store, "hi", "hello there", "more")
    await exchange.run(emit)
    assert [b.get("previous_response_id") for b in dialect.sent] == [
        first[-1]["response"]["id"], None]
    assert exchange.stale and exchange.outcome == "ok" and exchange.reply.failure is None
    assert not any(e["type"] == "error" for e in emitted)


async def test_an_unwell_upstream_before_the_first_token_moves_the_turn():
    """The exchange speaks to its upstream through the narrow ``Upstream`` interface:
    counted unwell, moved before the first token, the answer stored as the other's."""
    store = SessionStore(None)
    emitted: list[dict[str, Any]] = []

    async def emit(events: list[dict[str, Any]]) -> None:
        emitted.extend(events)

    exchange = _exchange(ScriptedDialect(Unreachable("connection refused")), store, "hi")
    down = exchange.upstream
    assert isinstance(down, Direct)
    down.name = "a"
    other = Direct(ScriptedDialect(_batches(lmstudio_events(Text("from b")))), down.plan,
                   name="b")
    down.then, down.movable = other, True
    await exchange.run(emit)
    assert exchange.outcome == "ok" and exchange.failovers == ["a"]
    assert exchange.upstream is other
    assert down.told == [("unwell", "unreachable"), ("failover", "unreachable")]
    assert other.told == [("succeeded",), ("ended", None, True)]
    assert not any(e["type"] == "error" for e in emitted)
    [node] = store.nodes(KEY)
    assert node.upstream == "b"


async def test_a_failure_on_a_lone_upstream_reaches_the_client_and_is_learned():
    store = SessionStore(None)
    exchange = _exchange(ScriptedDialect(Unreachable("connection refused")), store, "hi")
    emitted: list[dict[str, Any]] = []

    async def emit(events: list[dict[str, Any]]) -> None:
        emitted.extend(events)

    await exchange.run(emit)
    assert exchange.outcome == "error" and exchange.failovers == []
    assert isinstance(exchange.upstream, Direct)
    assert exchange.upstream.told == [("unwell", "unreachable"),
                                      ("ended", "unreachable", True)]
    assert [e["type"] for e in emitted][-1] == "error"
    assert store.nodes(KEY) == []
