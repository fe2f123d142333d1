"""The upstream client against a server that closes its keep-alive connections.

llama-server answers with ``Keep-Alive: timeout=5, max=100`` and then closes the
connection after every streamed answer. A request sent on that pooled connection before
the close is noticed gets no response at all ("Server disconnected without sending a
response"). The server here makes that race certain: it answers the first request on a
connection and drops the connection when the next one comes.
"""

from __future__ import annotations

import json
from functools import partial

import pytest
import trio

from lmsd.protocol.failures import BadRequest
from lmsd.upstreams.client import MODELS_CACHE_SECONDS, Upstream

MODELS = {"object": "list", "data": [{"id": "tiny", "object": "model"}]}


async def read_request(stream: trio.SocketStream, buffer: bytearray) -> tuple[str, bytes]:
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some()
        if not data:
            raise EOFError
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(rest) < length:
        rest += await stream.receive_some()
    buffer[:] = rest[length:]
    return head.split(b" ")[1].decode(), rest[:length]


def answer(path: str, body: bytes) -> bytes:
    if path == "/tokenize":
        data = json.dumps({"tokens": list(range(len(json.loads(body)["content"])))})
    elif path == "/v1/models":
        data = json.dumps(MODELS)
    else:
        data = json.dumps({"error": {"message": "File Not Found", "code": 404}})
    status = "200 OK" if path in ("/tokenize", "/v1/models") else "404 Not Found"
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: "
            f"{len(data)}\r\nKeep-Alive: timeout=5, max=100\r\n\r\n{data}").encode()


@pytest.fixture
async def closing_server(nursery):
    """One answer per connection: the next request on it gets the connection closed."""
    served: list[str] = []

    async def handler(stream: trio.SocketStream) -> None:
        buffer = bytearray()
        try:
            path, body = await read_request(stream, buffer)
            served.append(path)
            await stream.send_all(answer(path, body))
            await read_request(stream, buffer)  # reused: closed without an answer
        except (EOFError, trio.BrokenResourceError):
            pass
        finally:
            await stream.aclose()

    [listener] = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port = listener.socket.getsockname()[1]
    return f"http://127.0.0.1:{port}", served


async def test_counting_tokens_survives_a_dropped_keep_alive_connection(closing_server):
    url, served = closing_server
    upstream = Upstream(url)
    try:
        assert await upstream.count_tokens("abc") == 3
        assert await upstream.count_tokens("abcd") == 4  # not a silent estimate
    finally:
        await upstream.aclose()
    assert served.count("/tokenize") == 2


async def test_listing_models_survives_a_dropped_keep_alive_connection(closing_server):
    url, _ = closing_server
    upstream = Upstream(url)
    try:
        for _ in range(2):
            upstream._models = None  # past the short cache: ask again at once
            loaded, _listed = await upstream.models()  # not "not reachable"
            assert loaded == ["tiny"]
    finally:
        await upstream.aclose()


async def test_a_refreshed_listing_asks_the_endpoint_that_answered_first(emulator,
                                                                        autojump_clock):
    """Not LM Studio: /api/v1 and /api/v0 answer 404, /v1/models lists. The first look
    tries all three; a refresh asks /v1/models alone (one round trip, not three)."""
    emu = emulator
    emu.lmstudio_api = False
    upstream = Upstream(emulator.url)
    try:
        await upstream.models()
        first = [r.path for r in emu.log]
        await trio.sleep(MODELS_CACHE_SECONDS + 1)
        await upstream.models()
        again = [r.path for r in emu.log][len(first):]
    finally:
        await upstream.aclose()
    assert first == ["/api/v1/models", "/api/v0/models", "/v1/models"]
    assert again == ["/v1/models"]


@pytest.mark.parametrize("value", ["abc\n", "abc\r\nx-injected: 1", "a\x00b", "é", "\u202e"])
async def test_a_header_value_that_cannot_be_sent_is_the_requests_fault(emulator, value):
    """httpx refusing a header value (h11's LocalProtocolError, or a non-ASCII value it
    cannot encode) is a 400 naming the cause, not a broken upstream to count against it
    (issue 22, 3)."""
    upstream = Upstream(emulator.url)
    try:
        with pytest.raises(BadRequest, match="could not be sent upstream"):
            async with upstream.stream("/v1/responses", {"model": "m", "input": "hi"},
                                       headers={"x-session-id": value}):
                pass
    finally:
        await upstream.aclose()
    assert not [r for r in emulator.log if r.path == "/v1/responses"]


async def test_the_written_hook_fires_once_the_request_is_sent_before_any_answer(emulator):
    """``written_hook`` is called when the body is on the wire, while the engine has not
    answered (it hangs here): a turn's headers wait for that, not for the answer."""
    from lmsd.upstreams.wire import written_hook
    from tests.emulator.script import Fault

    emulator.inject(Fault.hang())
    upstream = Upstream(emulator.url)
    written = trio.Event()
    calls: list[str] = []

    def hook() -> None:
        calls.append("written")
        written.set()

    async def send() -> None:
        written_hook.set(hook)  # this task's context only
        model = next(iter(emulator.models))
        async with upstream.stream("/v1/responses", {"model": model, "input": "hi",
                                                     "stream": True}):
            calls.append("answered")

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            with trio.fail_after(10):
                await written.wait()
                while not emulator.generations:  # the engine has it (and hangs on it)
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()  # the answer never comes
    finally:
        await upstream.aclose()
    assert calls == ["written"]  # once, with no answer
    assert written_hook.get() is None  # the hook stayed in the sending task
