"""A browser's WebSocket handshake sent by hand (h11), for the tests that check what lmsd
answers one: any page can open these (WebSockets have no CORS)."""

from __future__ import annotations

import h11
import trio

from tests.support.processes import port_of


async def handshake(url: str, target: str, headers: dict[str, str] | None = None
                    ) -> tuple[int, bytes]:
    """The handshake to ``target`` on ``url``'s port, with ``headers`` over the usual ones
    (a Host, an Origin): (status, body)."""
    port = port_of(url)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    fields = {"Host": f"127.0.0.1:{port}", "Upgrade": "websocket", "Connection": "Upgrade",
              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13",
              **(headers or {})}
    async with stream:
        await stream.send_all(conn.send(h11.Request(method="GET", target=target,
                                                    headers=list(fields.items()))))
        status, body = 0, b""
        with trio.fail_after(10):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some())
                elif isinstance(event, h11.InformationalResponse | h11.Response):
                    status = event.status_code
                    if status == 101:
                        break
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
    return status, body
