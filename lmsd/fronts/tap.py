"""The client tap (issue 16): ASGI middleware on the proxy app that records a client
request while any session records.

It keeps the client request (its body as the app reads it, after the guard and within the
body limit) and every byte the client is sent (status, body chunks, their times), in a
``Recording`` it makes current for the request, so the upstream tap
(``upstreams/tap.py``) adds the upstream side. The finished exchange goes to the
``Recorder`` (``sessions/recordings.py``), which keeps it if its session records.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ..protocol import recording as fmt
from ..sessions.recordings import Recorder
from ..upstreams.tap import Recording, current

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def recorded(app: ASGIApp, recorder: Recorder,
             front_of: Callable[[str], str] = lambda path: "", *,
             max_body_bytes: int = 32 * 1024 * 1024) -> ASGIApp:
    """``app`` with a recording of each HTTP request while any session records.

    The tap reads nothing itself: it keeps the request body as the app reads it (so a
    request refused before its route reads nothing, recording or not) and at most
    ``max_body_bytes`` of it (the app refuses a longer one)."""
    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not recorder.active:
            await app(scope, receive, send)
            return
        await _record(app, recorder, scope, receive, send, front_of, max_body_bytes)
    return recording


async def _record(app: ASGIApp, recorder: Recorder, scope: Scope, receive: Receive,
                  send: Send, front_of: Callable[[str], str], max_body_bytes: int) -> None:
    body = bytearray()
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
    recording = Recording(fmt.new_exchange(
        recorded_at=time.time(), method="POST", path=scope["path"], headers=headers,
        body=b""))
    recording.exchange["front"] = front_of(scope["path"])
    stream = recording.exchange["client_stream"]
    decoder = codecs.getincrementaldecoder("utf-8")("replace")

    async def tapped() -> Message:
        message = await receive()
        if message["type"] == "http.request" and len(body) <= max_body_bytes:
            body.extend(message.get("body", b"")[:max_body_bytes + 1 - len(body)])
        return message

    async def sent(message: Message) -> None:
        if message["type"] == "http.response.start":
            stream["status"] = message["status"]
            stream["headers"] = fmt.allowed_headers(
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, v in message.get("headers", []))
        elif message["type"] == "http.response.body" and message.get("body"):
            recording.first("first_client_byte")
            stream["chunks"].append([recording.t(), decoder.decode(message["body"])])
        await send(message)

    token = current.set(recording)
    try:
        await app(scope, tapped, sent)
    finally:
        current.reset(token)
        recording.exchange["timings"]["total"] = recording.t()
        with trio.CancelScope(shield=True):
            await recorder.finish(recording.exchange, bytes(body))
