"""What every front does once it has planned a turn: build the exchange with the router's
hooks, and answer with a stream or with the whole answer."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from quart import Response

from ..asgi import json_response
from ..exchange import Exchange, Reply
from ..protocol.plan import TurnPlan
from ..sessions.store import SessionKey, SessionStore
from ..upstreams.dialect import Dialect
from ..upstreams.router import Router
from .drain import Drain
from .event_stream import EventStream, stream_response


def new_exchange(router: Router, store: SessionStore, dialect: Dialect, plan: TurnPlan,
                 reply: Reply, *, key: SessionKey, stream: bool) -> Exchange:
    """The exchange for one planned turn: it waits for a model reload of its own model,
    tells the router when chaining is refused, and teaches it the limit an overflow
    states."""
    model = key[2]
    return Exchange(dialect, plan, reply, store=store, key=key, stream=stream,
                    prepare=partial(router.wait_ready, model),
                    on_chaining_refused=router.refuse_chaining,
                    on_overflow=partial(router.learn_limit, model))


async def answer(exchange: Exchange, drain: Drain, ping_interval: float, *,
                 encode: Callable[[list[Any]], bytes], ping: bytes) -> Response:
    """A streamed answer, or (``stream: false``) the whole one once the exchange ends."""
    if exchange.stream:
        return stream_response(EventStream(exchange, drain, ping_interval, encode=encode,
                                           ping=ping))

    async def discard(events: list[Any]) -> None:
        pass  # the reply keeps what the whole answer needs

    try:
        await exchange.run(discard)
    finally:
        exchange.log_end(cancelled=exchange.outcome == "pending")
    return json_response(exchange.reply.result())
