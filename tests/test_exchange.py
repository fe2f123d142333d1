"""The Exchange against a test double of the upstream dialect: scripted event batches,
no HTTP. The dialect is the seam between one turn and the server behind it: it yields
pivot events, here decoded from scripted Responses events as the Responses dialect does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from lmsd.exchange import Exchange
from lmsd.protocol.anthropic.encode import AnthropicEncoder
from lmsd.protocol.anthropic.items import conversation
from lmsd.protocol.anthropic.reply import AnthropicReply
from lmsd.protocol.anthropic.request import validate_messages_request
from lmsd.protocol.chain import ChainNode
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

    def __init__(self, *answers: list[list[dict[str, Any]]]) -> None:
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
        decoder = ResponsesDecoder(message_id)

        async def gen() -> Batches:
            for batch in batches:
                yield [e for upstream in batch for e in decoder.feed(upstream)]

        yield gen()


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
    return Exchange(dialect, plan, reply, store=store, key=KEY)


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
