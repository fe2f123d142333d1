"""A TCP relay between a client and a server that keeps what the server sent: what reached
the client on the wire (SSE pings included), which no log of either side shows."""

from __future__ import annotations

from typing import Any

import trio


class WireTap:
    """Listen on 127.0.0.1, relay each connection to ``target_port``; ``received`` holds,
    per connection, the bytes the server sent back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.received: list[bytearray] = []
        self.url = ""

    async def serve(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        task_status.started(self.url)
        await trio.serve_listeners(self._relay, listeners)

    async def _relay(self, client: trio.SocketStream) -> None:
        received = bytearray()
        self.received.append(received)
        server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        async with client, server, trio.open_nursery() as nursery:
            nursery.start_soon(_pump, client, server, None, nursery.cancel_scope)
            nursery.start_soon(_pump, server, client, received, nursery.cancel_scope)

    def count(self, needle: bytes) -> int:
        """How often ``needle`` occurs in what the server sent, over all connections."""
        return sum(bytes(r).count(needle) for r in self.received)


async def _pump(source: trio.SocketStream, sink: trio.SocketStream, keep: bytearray | None,
                done: trio.CancelScope) -> None:
    """Copy ``source`` to ``sink`` (keeping a copy in ``keep``); when either side closes,
    the exchange is over: ``done`` stops the other direction."""
    try:
        async for chunk in source:
            if keep is not None:
                keep += chunk
            await sink.send_all(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    done.cancel()
