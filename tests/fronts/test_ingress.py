"""What a request costs lmsd before it is refused: nothing. A refused request is never read
(recording or not), an over-limit body is never buffered past the limit, a body nested too
deeply is the same clean 400 with recording on as off, and no request, WebSocket
handshakes to unknown paths included, can write a traceback to the log."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio

from lmsd.fronts import tap
from lmsd.log import TextFormatter
from lmsd.sessions.recordings import Recorder
from tests.support.processes import port_of
from tests.support.websocket import handshake

MiB = 1024 * 1024
SENT_AT_MOST = 48 * MiB  # what the raw client sends before it gives up on an answer
CHUNK = b"x" * 65536


@pytest.fixture
def server_reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Bytes of request bodies the proxy app took from hypercorn (everything around the
    recorder included): ``before`` its answer started, and in all (``total``: after the
    answer lmsd drops what hypercorn had queued, a bounded few chunks)."""
    read = {"before": 0, "total": 0}
    recorded = tap.recorded

    def counting(app: Any, *args: Any, **kwargs: Any) -> Any:
        inner = recorded(app, *args, **kwargs)

        async def counted(scope: Any, receive: Any, send: Any) -> None:
            answered = False

            async def counting_receive() -> Any:
                message = await receive()
                size = len(message.get("body", b""))
                read["total"] += size
                read["before"] += 0 if answered else size
                return message

            async def noting_send(message: Any) -> None:
                nonlocal answered
                answered = answered or message["type"] == "http.response.start"
                await send(message)

            await inner(scope, counting_receive, noting_send)
        return counted

    monkeypatch.setattr(tap, "recorded", counting)
    return read


QUEUED = 16 * 65536  # hypercorn's app queue (10 messages) of 64 KiB reads, and a margin


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    """The log as lmsd writes it at its default level (info), from every logger."""
    text = io.StringIO()
    handler = logging.StreamHandler(text)
    handler.setFormatter(TextFormatter())
    handler.setLevel(logging.INFO)
    lmsd_logger = logging.getLogger("lmsd")
    targets = [logging.getLogger()] + ([] if lmsd_logger.propagate else [lmsd_logger])
    for target in targets:
        target.addHandler(handler)
    try:
        yield text
    finally:
        for target in targets:
            target.removeHandler(handler)


async def raw_post(url: str, headers: dict[str, str], *, declared: int | None,
                   path: str = "/v1/messages") -> tuple[int, int]:
    """POST a body of ``declared`` bytes (chunked when None, and endless), sending it while
    reading the answer, as a hostile client would: (status, bytes sent by then). Without
    an answer after ``SENT_AT_MOST`` bytes it waits, and the test fails on its limit."""
    port = port_of(url)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    fields = {"Host": f"127.0.0.1:{port}", **headers}
    if declared is None:
        fields["Transfer-Encoding"] = "chunked"
    else:
        fields["Content-Length"] = str(declared)
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    sent = 0
    answer = bytearray()
    async with stream:
        await stream.send_all(head.encode() + b"\r\n")

        async def pump() -> None:
            nonlocal sent
            piece = CHUNK if declared is not None else b"10000\r\n" + CHUNK + b"\r\n"
            try:
                while sent < SENT_AT_MOST:
                    await stream.send_all(piece)
                    sent += len(CHUNK)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # lmsd answered and closed the connection: the rest is never read

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)
            with trio.fail_after(30):
                while b"\r\n\r\n" not in answer:
                    data = await stream.receive_some()
                    if not data:
                        break
                    answer += data
            nursery.cancel_scope.cancel()
    return int(answer.split(b" ", 2)[1]), sent


JSON = {"Content-Type": "application/json"}
REFUSALS = {
    "foreign_origin": ({**JSON, "Origin": "https://evil.example"}, 403),
    "text_plain": ({"Content-Type": "text/plain"}, 415),
    "rebound_host": ({**JSON, "Host": "evil.example"}, 403),
}


@pytest.mark.parametrize("recording", [True, False], ids=["recording", "not_recording"])
@pytest.mark.parametrize("refusal", list(REFUSALS))
async def test_a_refused_post_is_answered_without_reading_its_body(
        start_lmsd, emulator, server_reads, refusal, recording):
    """A 400 MB POST a web page could have sent: the refusal comes after the headers, and
    lmsd reads no byte of the body (today, while a session records, it reads it all)."""
    lmsd = await start_lmsd(emulator.url, **({"record_sessions": "rec"} if recording else {}))
    headers, status = REFUSALS[refusal]
    got, _ = await raw_post(lmsd.url, headers, declared=400 * MiB)
    assert got == status
    assert server_reads["before"] == 0
    assert server_reads["total"] <= QUEUED


@pytest.mark.parametrize("declared", [400 * MiB, None], ids=["content_length", "chunked"])
async def test_an_over_limit_body_is_refused_unbuffered_while_recording(
        start_lmsd, emulator, server_reads, declared):
    """A body over max_body_bytes is a 413 while a session records: one that says its
    length is never read; a chunked one is read only up to about the limit, not buffered
    whole first (today the recorder waits for its end, which never comes)."""
    lmsd = await start_lmsd(emulator.url, record_sessions="rec", max_body_bytes=str(MiB))
    status, _ = await raw_post(lmsd.url, JSON, declared=declared)
    assert status == 413
    if declared is not None:
        assert server_reads["before"] == 0
        assert server_reads["total"] <= QUEUED
    else:  # a bound (lmsd stops when the limit is passed), far under what was offered
        assert server_reads["total"] < 8 * MiB


def deep(depth: int = 200_000) -> bytes:
    return b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], ' \
           b'"input": "x", "metadata": ' + b"[" * depth + b"]" * depth + b"}"


FRONTS = ["/v1/messages", "/v1/messages/count_tokens", "/v1/chat/completions",
          "/v1/responses"]


@pytest.mark.parametrize("recording", [True, False], ids=["recording", "not_recording"])
async def test_a_body_nested_too_deeply_is_a_clean_400_on_every_front(
        start_lmsd, emulator, log_text, recording):
    lmsd = await start_lmsd(emulator.url, **({"record_sessions": "rec"} if recording else {}))
    async with httpx.AsyncClient(base_url=lmsd.url, timeout=30) as http:
        for path in FRONTS:
            response = await http.post(path, content=deep(), headers=JSON)
            assert response.status_code == 400, (path, response.text[:300])
            assert "nested too deeply" in response.text, path
            assert "Traceback" not in response.text
    assert "Traceback" not in log_text.getvalue()


async def _asgi_post(app: Any, body: bytes) -> list[dict[str, Any]]:
    """One POST through an ASGI app, in memory: what the client was sent."""
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await trio.sleep_forever()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/messages", "headers": []}
    await app(scope, receive, send)
    return sent


async def _reads_and_answers(scope: Any, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 400, "headers": []})
    await send({"type": "http.response.body", "body": b"refused"})


@pytest.mark.parametrize("failure", ["sink_fails", "deep_body"])
async def test_a_request_that_cannot_be_recorded_is_served_with_one_warning(
        log_text, failure):
    """Recording is a side line: whatever fails in it (the disk, a body too deep to copy)
    is one warning line, never the request's 500 and never a traceback."""
    def sink(exchange: dict[str, Any]) -> None:
        if failure == "sink_fails":
            raise RuntimeError("the disk is gone")

    app = tap.recorded(_reads_and_answers, Recorder(None, sink=sink))
    body = deep() if failure == "deep_body" else b'{"model": "m"}'
    sent = await _asgi_post(app, body)
    assert [m.get("status") for m in sent][:1] == [400]
    assert sent[1]["body"] == b"refused"
    log = log_text.getvalue()
    assert "Traceback" not in log
    if failure == "sink_fails":
        assert log.count("session.record_failed") == 1 and "the disk is gone" in log


@pytest.mark.parametrize(("target", "on_proxy"), [
    ("/nope", 404), ("/events/x", 404), ("/session/a/b", 404), ("/metrics/x", 404),
    ("/v1/messages", 405)])  # an HTTP route: the method is wrong
async def test_a_websocket_handshake_to_an_unknown_path_is_a_404_on_both_ports(
        lmsd, log_text, target, on_proxy):
    """Today the proxy answers it with a 500 and logs a 5.8 KB traceback."""
    for url, status in ((lmsd.url, on_proxy), (lmsd.admin_url, 404)):
        got, body = await handshake(url, target)
        assert got == status, (url, target, body)
        assert b'"type":"error"' in body
    assert "Traceback" not in log_text.getvalue()
    assert "request.rejected" in log_text.getvalue()


async def test_a_burst_of_websocket_handshakes_keeps_the_log_small(lmsd, log_text):
    """Any web page can open WebSockets (no CORS): 200 of them are 200 short lines, not
    200 tracebacks (5.8 KB each today)."""
    for n in range(100):
        for url in (lmsd.url, lmsd.admin_url):
            assert (await handshake(url, f"/x{n}"))[0] == 404
    log = log_text.getvalue()
    assert "Traceback" not in log
    assert len(log.encode()) < 200 * 400, f"{len(log.encode())} bytes of log"


async def test_an_exception_in_a_route_is_one_line_without_traceback(log_text):
    """A bug a request reaches is logged as one ``request.failed`` line (the traceback only
    at log_level = debug), and the client gets a 500 in its own shape."""
    from lmsd.asgi import log_exception

    try:
        raise RuntimeError("boom " + "x" * 1000)
    except RuntimeError:
        import sys

        log_exception("lmsd.proxy", sys.exc_info())
    log = log_text.getvalue()
    assert "Traceback" not in log and log.count("\n") == 1
    assert "request.failed" in log and "RuntimeError: boom" in log and len(log) < 600
