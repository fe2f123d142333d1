"""How a streamed answer reaches the socket (``fronts/event_stream.py``): what one upstream
chunk produced goes out in one write, and what queued while a write was going out goes
with the next one; nothing waits for more."""

from __future__ import annotations

from typing import Any

import trio

from lmsd.fronts.drain import Drain
from lmsd.fronts.event_stream import EventStream
from tests.support.upstream_streams import Text, lmstudio_events
from tests.test_exchange import ScriptedDialect, SessionStore, _exchange


def _encode(events: list[Any]) -> bytes:
    return b"".join(f"[{e['type'] if isinstance(e, dict) else e}]".encode()
                    for e in events)


async def _writes(body: EventStream, after_first: Any = None) -> list[bytes]:
    """The body's writes, as Quart makes them (one ASGI send each)."""
    writes: list[bytes] = []
    async with body:
        async for chunk in body:
            writes.append(chunk)
            if after_first is not None and len(writes) == 1:
                await after_first()  # the socket is slow: the producer runs ahead
    return writes


async def test_one_upstream_chunk_is_one_write_whatever_it_holds():
    events = lmstudio_events(Text("hello there, all in one chunk"))
    exchange = _exchange(ScriptedDialect([events]), SessionStore(None), "hi")
    writes = await _writes(EventStream(exchange, Drain(), 30.0, encode=_encode, ping=b"."))
    # the reply's start, then everything the one upstream chunk made
    assert len(writes) == 2
    assert writes[1].count(b"[content_block_delta]") >= 1
    assert writes[1].endswith(b"[message_stop]")


async def test_one_write_per_upstream_chunk_when_the_client_keeps_up():
    events = lmstudio_events(Text("hello there"))
    exchange = _exchange(ScriptedDialect([[e] for e in events]), SessionStore(None), "hi")
    writes = await _writes(EventStream(exchange, Drain(), 30.0, encode=_encode, ping=b"."))
    assert b"".join(writes).count(b"[content_block_delta]") >= 2
    assert len(writes) <= len(events) + 1  # never more writes than chunks (and the start)


class Scripted:
    """An exchange whose upstream sends ``n`` chunks of one event each, at once."""

    def __init__(self, n: int) -> None:
        self.n, self.sent = n, trio.Event()
        self.reply = self
        self.done = False

    def start(self) -> list[Any]:
        return ["start"]

    async def run(self, emit: Any) -> None:
        for i in range(self.n):
            await emit([f"e{i}"])
        self.done = True
        self.sent.set()

    def log_end(self, *, cancelled: bool = False) -> None:
        pass


async def test_what_queued_during_a_slow_write_goes_out_in_the_next_one():
    exchange = Scripted(5)
    body = EventStream(exchange, Drain(), 30.0, encode=_encode, ping=b".")  # type: ignore
    writes = await _writes(body, after_first=exchange.sent.wait)
    assert writes[0] == b"[start]"
    assert writes[1:] == [b"[e0][e1][e2][e3][e4]"]  # in order, one write


class Begun(Scripted):
    """A ``Scripted`` exchange that says when its request is written (after its first
    event) and whether it was cut off."""

    def __init__(self, n: int, *, hang: bool = False) -> None:
        super().__init__(n)
        self.written, self.hang, self.cancelled = trio.Event(), hang, False

    async def run(self, emit: Any) -> None:
        try:
            await emit(["e0"])
            self.written.set()
            if self.hang:
                await trio.sleep_forever()
            for i in range(1, self.n):
                await emit([f"e{i}"])
            self.done = True
        except trio.Cancelled:
            self.cancelled = True
            raise


async def test_begun_before_the_headers_the_producer_ends_with_the_body():
    exchange = Begun(3)
    body = EventStream(exchange, Drain(), 30.0, encode=_encode, ping=b".")  # type: ignore
    async with trio.open_nursery() as nursery:  # the request's (``asgi.NURSERY``)
        await body.begin(nursery)
        assert exchange.written.is_set()  # begin returned once the request was written
        writes = await _writes(body)
        assert b"".join(writes) == b"[start][e0][e1][e2]"
        assert exchange.done and not exchange.cancelled


async def test_begun_producer_is_cut_off_when_the_client_leaves():
    exchange = Begun(3, hang=True)
    body = EventStream(exchange, Drain(), 30.0, encode=_encode, ping=b".")  # type: ignore
    async with trio.open_nursery() as nursery:
        await body.begin(nursery)
        async with body:
            async for chunk in body:
                if chunk != b"[start]":
                    break  # the client went away after the first event
        # the body's exit ended the producer (it ran in the request's nursery)
        assert exchange.cancelled and not exchange.done
