"""What every front's HTTP side shares: the request's JSON body, the answer (a stream, or
the whole answer once the exchange ends), and a failure in OpenAI's words (both OpenAI
fronts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from quart import Response, request

from ..asgi import NURSERY, Rendered, json_response
from ..exchange import Exchange
from ..protocol.anthropic.request import parse_json
from ..protocol.failures import Failure, UnsupportedMedia, UpstreamBroken
from ..protocol.openai_errors import render_openai
from .drain import Drain
from .event_stream import EventStream, stream_response


async def read_json() -> Any:
    """The request's JSON body; a compressed one is refused by name."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedMedia(f"Content-Encoding {encoding!r} is not supported: send the "
                               f"JSON body uncompressed")
    return parse_json(await request.get_data(cache=False))


async def answer(exchange: Exchange, drain: Drain, ping_interval: float, *,
                 encode: Callable[[list[Any]], bytes], ping: bytes,
                 max_bytes: int = 32 * 1024 * 1024) -> Response:
    """A streamed answer, or (``stream: false``) the whole one once the exchange ends. The
    whole one is held in memory: past ``max_bytes`` (max_body_bytes; counted as the
    stream's bytes would be) the exchange is stopped, which stops the upstream too, and
    the client is told why (an upstream that never ends would otherwise grow lmsd)."""
    if exchange.stream:
        body = EventStream(exchange, drain, ping_interval, encode=encode, ping=ping)
        if (nursery := request.scope.get(NURSERY)) is not None:
            await body.begin(nursery)  # the request goes upstream before the headers out
        return stream_response(body)
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


def render_openai_failure(failure: Failure) -> Rendered:
    """A failure before the stream, as OpenAI clients read it (Codex shows a 400 verbatim
    and never retries it)."""
    error = render_openai(failure)
    return Rendered(error.status, error.type, error.message, error.body(), error.headers)
