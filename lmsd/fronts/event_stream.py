"""The streaming response body of every front: a producer task runs the exchange, the
body sends keep-alives while the upstream is silent.

Quart sends a body inside ``async with body: async for chunk in body``. Opening the
nursery in ``__aenter__`` and closing it in ``__aexit__`` nests the upstream reader
task properly inside that block, in the request's own task: no task outlives the
request, and a client disconnect (which cancels Quart's request scope) cancels the
upstream request at once. A route that has its request's nursery starts the producer
there instead (``begin``), before the headers, and the body ends it the same way. When
the drain period (``drain.py``) runs out, the producer is
cancelled and the client gets its front's failure event instead of a cut stream.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import trio
from quart import Response
from quart.wrappers.response import ResponseBody

from ..exchange import Exchange
from ..protocol.failures import ShuttingDown
from .drain import Drain

#: How long the answer's headers wait for the request to be written upstream (``begin``):
#: a local engine takes it in well under a millisecond; one that does not read it (a
#: reload, a full socket) must not hold the headers past a client's first-byte window.
WRITE_WAIT = 0.05
SHUTTING_DOWN = ShuttingDown("lmsd is shutting down; the request was cut off, retry it")


class EventStream(ResponseBody):
    """SSE body for one exchange: the reply's first events at once, ``ping`` while the
    upstream is silent; ``encode`` turns the reply's events into bytes."""

    def __init__(self, exchange: Exchange, drain: Drain, ping_interval: float, *,
                 encode: Callable[[list[Any]], bytes], ping: bytes) -> None:
        self.exchange = exchange
        self.encode = encode
        self.ping = ping
        self.drain = drain
        self.ping_interval = ping_interval
        self._send, self._receive = trio.open_memory_channel[bytes](16)
        self._nursery_manager = trio.open_nursery()
        self._producer = trio.CancelScope()
        self._finished = False
        self._drained = False
        self._began: trio.Event | None = None  # the producer's end, once ``begin`` started it

    async def begin(self, nursery: trio.Nursery) -> None:
        """Start the exchange in ``nursery`` (the request's, ``asgi.NURSERY``) before the
        answer's headers go out, and wait until its request is written upstream (at most
        ``WRITE_WAIT``): the engine then works on the prompt while lmsd sends the headers
        and the reply's first events, instead of after (about 1.5 ms of each first token).
        The body ends the producer with itself, as when it runs in the body's nursery."""
        self._first = self.encode(self.exchange.reply.start())
        self._began = trio.Event()
        nursery.start_soon(self._produce_outside)
        with trio.move_on_after(WRITE_WAIT):
            await self.exchange.written.wait()

    async def __aenter__(self) -> EventStream:
        # The first events (message_start, response.created) are taken before the producer
        # exists, so they are always first and go out before the upstream has answered.
        began = self._began is not None
        if not began:
            self._first = self.encode(self.exchange.reply.start())
        nursery = await self._nursery_manager.__aenter__()
        self._nursery = nursery
        self.drain.stream_opened()
        if not began:
            nursery.start_soon(self._produce)
        nursery.start_soon(self._cut_on_drain)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._nursery.cancel_scope.cancel()  # if the client left early, stop LM Studio now
        try:
            if self._began is not None:  # the producer runs outside: end it here too
                self._producer.cancel()
                with trio.CancelScope(shield=True):
                    await self._began.wait()
            return await self._nursery_manager.__aexit__(exc_type, exc, tb)
        finally:
            self.drain.stream_closed()
            self.exchange.log_end(cancelled=not self._finished)

    async def _produce_outside(self) -> None:
        assert self._began is not None
        try:
            await self._produce()
        finally:
            self._began.set()

    async def _produce(self) -> None:
        with self._producer:
            async with self._send:
                async def emit(events: list[dict[str, Any]]) -> None:
                    await self._send.send(self.encode(events))
                await self.exchange.run(emit)

    async def _cut_on_drain(self) -> None:
        await self.drain.expired.wait()
        self._drained = True
        self._producer.cancel()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        yield self._first
        while True:
            chunk = self.ping  # sent if the upstream stays silent for ping_interval
            # Once the last event is out (message_stop or error), nothing may follow it:
            # wait for the producer to finish storing the turn without pinging.
            silence = math.inf if self.exchange.reply.done else self.ping_interval
            with trio.move_on_after(silence):
                try:
                    chunk = await self._receive.receive()
                except trio.EndOfChannel:
                    self._finished = True
                    break
            yield self._with_queued(chunk)  # outside the cancel scope: never yield inside one
        if self._drained and not self.exchange.reply.done:
            self.exchange.outcome = "drained"
            yield self.encode(self.exchange.reply.fail(SHUTTING_DOWN))


    def _with_queued(self, chunk: bytes) -> bytes:
        """``chunk`` and whatever the producer queued behind it while the last write went
        out, as one write: every write is a trip through hypercorn, h11 and the socket
        (about a third of lmsd's time on a streamed turn). Nothing waits for more."""
        if self._receive.statistics().current_buffer_used == 0:
            return chunk
        chunks = [chunk]
        while True:
            try:
                chunks.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break  # the end is seen by the next receive
        return b"".join(chunks)


def stream_response(body: EventStream) -> Response:
    """The HTTP response carrying ``body``: never buffered by a proxy, never timed out."""
    response = Response(body, status=200, content_type="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    response.timeout = None  # Quart's 60 s default would cut long streams
    return response
