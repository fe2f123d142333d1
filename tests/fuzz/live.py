"""A live lmsd for the fuzzers: the emulator and the daemon (both ports, hypercorn on
loopback) in a thread of their own, driven by raw sockets so that every byte of a request
is the fuzzer's, and every log record captured.

Why not Quart's test client: hypercorn's own HTTP parsing, the request-id and guard
hooks and the ASGI wrappers are the surface a hostile client reaches, and a test client
would let through requests no socket can carry (a newline in a header) or hide ones that
only a server sees (a WebSocket handshake)."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import trio

from lmsd.config import load_settings
from lmsd.daemon.supervisor import Bound, serve
from lmsd.upstreams.breaker import Breaker
from tests.emulator import Emulator, serve_emulator

TIMEOUT = 30.0


class Catch(logging.Handler):
    """Every record that carries a traceback, or whose text shows one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.bad: list[str] = []
        self.guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not format is a finding too
            text = f"{record.msg!r} % {record.args!r}"
        extra = json.dumps(getattr(record, "lmsd_fields", {}), default=str)
        if record.exc_info or record.stack_info or "Traceback" in text + extra:
            detail = "".join(traceback.format_exception(*record.exc_info)) \
                if record.exc_info and record.exc_info[0] else ""
            with self.guard:
                self.bad.append(f"{record.name} {record.levelname} {text} {extra}\n{detail}")

    def take(self) -> list[str]:
        with self.guard:
            bad, self.bad = self.bad, []
        return bad


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Live:
    """The running pair; a plain class, so hypothesis prints it as one short line."""

    def __init__(self, bound: Bound, emulator: Emulator, token: trio.lowlevel.TrioToken,
                 catch: Catch) -> None:
        self.proxy, self.admin = _addr(bound.proxy_url), _addr(bound.admin_url)
        self.bound, self.emulator, self.token, self.catch = bound, emulator, token, catch

    def send(self, port: str, raw: bytes) -> Reply:
        """Send ``raw`` (a whole HTTP/1.1 request) to ``port`` ("proxy" or "admin")
        on a fresh connection; read the answer (until it is whole, or the server closes)."""
        with socket.create_connection(getattr(self, port), timeout=TIMEOUT) as sock:
            sock.sendall(raw)  # no half-close: hypercorn takes it for a client gone
            data = b""
            while not complete(data) and (chunk := sock.recv(65536)):
                data += chunk
        return parse_reply(data)

    def __repr__(self) -> str:
        return f"Live(proxy={self.proxy}, admin={self.admin})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def reset_health(self) -> None:
        """Fresh breakers: each example is a request alone, whatever the one before did."""
        def reset() -> None:
            for backend in self.bound.router.backends:
                backend.breaker = Breaker(backend.breaker.failures, backend.breaker.cooldown)
        trio.from_thread.run_sync(reset, trio_token=self.token)

    def breakers(self) -> list[str]:
        return [b.breaker.state for b in self.bound.router.backends]


def complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    lower = head.lower()
    if b" 101 " in head.split(b"\r\n", 1)[0]:
        return True
    if b"transfer-encoding: chunked" in lower:
        return body.endswith(b"0\r\n\r\n")
    for line in lower.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False  # the server closes to end it


def parse_reply(data: bytes) -> Reply:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError(f"no complete HTTP answer: {data[:300]!r}")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = dechunk(body)
    elif "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return Reply(status, headers, body)


def dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2:]
    return bytes(out)


def request(method: str, target: bytes | str, *, headers: list[tuple[str, bytes | str]],
            body: bytes = b"", port: int = 0) -> bytes:
    """A raw HTTP/1.1 request (Host, Connection and Content-Length added unless given)."""
    names = {name.lower() for name, _ in headers}
    lines = [(method.encode("latin-1", "replace") + b" " + _b(target) + b" HTTP/1.1")]
    if "host" not in names:
        lines.append(f"Host: 127.0.0.1:{port}".encode())
    lines += [name.encode("latin-1", "replace") + b": " + _b(value) for name, value in headers]
    if "content-length" not in names and "transfer-encoding" not in names and (
            body or method not in ("GET", "HEAD", "DELETE", "OPTIONS")):
        lines.append(f"Content-Length: {len(body)}".encode())
    if "connection" not in names:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _b(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")


async def _main(tmp: Path, ready: Any, stop: trio.Event, overrides: dict[str, str]) -> None:
    emu = Emulator()
    async with trio.open_nursery() as outer:
        emu.url = await serve_emulator(outer, emu)  # type: ignore[attr-defined]
        settings = load_settings({"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0",
                                  "upstream": emu.url, "state_dir": str(tmp / "state"),
                                  "watch": "false", **overrides}, {})
        shutdown = trio.Event()
        with trio.move_on_after(60):  # a drain that hangs must not hang the test run
            async with trio.open_nursery() as inner:
                bound: Bound = await inner.start(partial(serve, settings, shutdown=shutdown))
                ready((bound, emu, trio.lowlevel.current_trio_token()))
                await stop.wait()
                shutdown.set()
        outer.cancel_scope.cancel()  # the emulator serves forever


def _addr(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("http://").rpartition(":")
    return host, int(port)


@contextlib.contextmanager
def live_lmsd(tmp: Path, **overrides: str) -> Iterator[Live]:
    """Serve until the block ends (``overrides`` are settings); every log record (lmsd's,
    hypercorn's, quart's) is watched for tracebacks from the start."""
    catch = Catch()
    watched = [logging.getLogger(n) for n in ("lmsd", "", "quart.app", "quart.serving",
                                               "hypercorn.error", "trio")]
    for log in watched:
        log.addHandler(catch)
    started = threading.Event()
    box: dict[str, Any] = {}
    stop_box: dict[str, Any] = {}

    def ready(value: Any) -> None:
        box["value"] = value
        started.set()

    def run() -> None:
        async def main() -> None:
            stop_box["event"] = trio.Event()
            stop_box["token"] = trio.lowlevel.current_trio_token()
            await _main(tmp, ready, stop_box["event"], overrides)
        try:
            trio.run(main)
        except BaseException as exc:  # reported by the test
            box["error"] = exc
            started.set()

    thread = threading.Thread(target=run, name="lmsd-fuzz", daemon=True)
    thread.start()
    started.wait(60)
    if "value" not in box:
        raise RuntimeError(f"lmsd did not start: {box.get('error')!r}")
    bound, emu, token = box["value"]
    live = Live(bound, emu, token, catch)
    try:
        yield live
    finally:
        trio.from_thread.run_sync(stop_box["event"].set, trio_token=token)
        thread.join(30)
        for log in watched:
            log.removeHandler(catch)
        if "error" in box:
            raise box["error"]
