"""The upstream tap (issue 16): each upstream request of a recorded client request, and
the raw chunks of its answer as they arrive (before any parsing).

A client request being recorded is a ``Recording``, found through ``current`` (None when
nothing records: the tap then costs one lookup). The client side sets it
(``fronts/tap.py``); ``RecordingTransport`` wraps every upstream client's transport
(``tap``) and fills it; the front says whose request it is (``note_binding``). The format
is ``protocol/recording.py``; which sessions record, and their files, is
``sessions/recordings.py``.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

import httpx
import trio

from ..protocol import recording as fmt

#: The client request being recorded, if any (set by the client tap for its request).
current: ContextVar[Recording | None] = ContextVar("lmsd_recording", default=None)


class Recording:
    """One client request being recorded: the exchange dict as it fills."""

    def __init__(self, exchange: dict[str, Any]) -> None:
        self.exchange = exchange
        self.start = trio.current_time()

    def t(self) -> float:
        return round(trio.current_time() - self.start, 4)

    def first(self, name: str) -> None:
        self.exchange["timings"].setdefault(name, self.t())


def note_binding(session: str, agent: str, dialect: Any) -> None:
    """The front placed the request being recorded (if any): whose it is, and the
    upstream kind it speaks (replay speaks the same)."""
    recording = current.get()
    if recording is not None:
        recording.exchange.update(session=session, agent=agent,
                                  dialect=getattr(dialect, "name", None),
                                  server=type(dialect).__name__)


class _Tap(httpx.AsyncByteStream):
    """An upstream answer's raw bytes, kept as they pass to the dialect's parser."""

    def __init__(self, inner: httpx.AsyncByteStream, chunks: list[list[Any]],
                 recording: Recording) -> None:
        self.inner, self.chunks, self.recording = inner, chunks, recording
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:  # type: ignore[attr-defined]
            self.recording.first("first_upstream_byte")
            self.chunks.append([self.recording.t(), self.decoder.decode(chunk)])
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class RecordingTransport(httpx.AsyncBaseTransport):
    """The upstream client's transport, recording when the current request records."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        recording = current.get()
        if recording is None:
            return await self.inner.handle_async_request(request)
        path = request.url.raw_path.decode("ascii", "replace")
        entry: dict[str, Any] = {"t": recording.t(), "method": request.method, "path": path,
                                 "body": fmt.redact(fmt.as_body(request.content)),
                                 "status": None, "headers": {}, "chunks": []}
        recording.exchange["upstream"].append(entry)
        response = await self.inner.handle_async_request(request)
        entry["status"] = response.status_code
        entry["headers"] = fmt.allowed_headers(response.headers.items())
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(response.status_code, headers=response.headers,
                              stream=_Tap(response.stream, entry["chunks"], recording),
                              extensions=response.extensions, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def tap(client: httpx.AsyncClient) -> None:
    """Record ``client``'s requests whenever the request being served records."""
    transport = client._transport  # httpx has no public setter
    if not isinstance(transport, RecordingTransport):
        client._transport = RecordingTransport(transport)
