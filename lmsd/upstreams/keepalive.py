"""A request that went out on a kept-alive connection the server had just closed is sent
again, once. llama-server closes the connection after every streamed answer although it
says keep-alive (cpp-httplib ends a chunked body and then reports it cancelled), and any
server closes one its keep-alive timer ran out on: a request that races the close gets
no answer at all ("Server disconnected without sending a response"). The server read
none of it, so sending it again on another connection is safe; one place for every
request lmsd sends upstream (a turn, a poll, a slot save, a park), not one retry each."""

from __future__ import annotations

import httpx

#: How a dead pooled connection shows before any answer: closed unanswered, reset while
#: the answer was awaited, or refused while the request was written.
DEAD_CONNECTION = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class ResendOnDeadConnection(httpx.AsyncBaseTransport):
    """Wraps the pool's transport: one more try, on another connection, for a request
    whose body can be sent again (bytes; a streamed body cannot)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.resent = 0  # how many requests met a dead connection (seen in tests)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.inner.handle_async_request(request)
        except DEAD_CONNECTION:
            if not isinstance(request.stream, httpx.ByteStream):
                raise
            self.resent += 1
            return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
