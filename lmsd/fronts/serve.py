"""What every front does with a request: read its body, refuse a prompt that cannot fit,
build the exchange with the router's hooks, and answer with a stream or the whole answer."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from functools import partial
from typing import Any

from quart import Response, request

from ..asgi import json_response
from ..config import Settings
from ..exchange import REPAIRED_CALL_PREFIX, Exchange, Reply
from ..log import event
from ..protocol.anthropic.request import parse_json
from ..protocol.failures import UnsupportedMedia
from ..protocol.fit import check_fit, wants_exact_count
from ..protocol.pivot import Conversation
from ..protocol.plan import TurnPlan
from ..protocol.repair import ToolCallRepair
from ..protocol.repair.split import SplitRepair
from ..sessions.store import SessionKey, SessionStore
from ..upstreams.dialect import Dialect
from ..upstreams.router import Router
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


def new_exchange(router: Router, store: SessionStore, dialect: Dialect, plan: TurnPlan,
                 reply: Reply, *, key: SessionKey, front: str, stream: bool,
                 repair: SplitRepair | None = None) -> Exchange:
    """The exchange for one planned turn: it waits for a model reload of its own model,
    tells the router when chaining is refused, teaches it the limit an overflow states,
    and repairs tool calls printed as text with ``repair`` (see ``repair_for``)."""
    model = key[2]
    return Exchange(dialect, plan, reply, store=store, key=key, front=front, stream=stream,
                    prepare=partial(router.wait_ready, model),
                    on_chaining_refused=router.refuse_chaining,
                    on_overflow=partial(router.learn_limit, model), repair=repair)


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


async def read_json() -> Any:
    """The request's JSON body; a compressed one is refused by name."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedMedia(f"Content-Encoding {encoding!r} is not supported: send the "
                               f"JSON body uncompressed")
    return parse_json(await request.get_data(cache=False))


async def refuse_if_too_long(router: Router, model: str, estimate: int, *, front: str,
                             text: Callable[[], str]) -> None:
    """Refuse a prompt that cannot fit the loaded context before sending it: the client
    compacts at once and the engine spends no prefill on it. Where the engine has its own
    tokenizer, it settles a close call (``text()`` is what it counts)."""
    limit = router.context_limit(model)
    exact = None
    if wants_exact_count(estimate, limit) and (await router.dialect()).counts_tokens:
        exact = await router.count_tokens(text(), model=model)
    error = check_fit(estimate, limit, exact)
    if error is not None:
        event("request.too_long", level=30, front=front, model=model, context_length=limit,
              estimate_tokens=estimate, counted_tokens=exact, action="refused before sending")
        raise error
