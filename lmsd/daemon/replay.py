"""``lmsd replay FILE``: a recorded exchange run again through the current code.

The proxy app is built in-process over one upstream whose transport answers from the
recording (``ReplayTransport``: each upstream request gets the recorded answer to the
same method and path, in order, chunk by chunk; no network), or, with ``--against
URL``, over that live upstream. The recorded client request is handed to the app as an
ASGI call, in-process: no socket is opened for it. The client-visible stream is recorded
as it was the first time, then compared after normalizing (``protocol/recording.py``):
ids, clocks and pings differ on every run and are not differences; against a live
upstream, neither are the tool call ids it mints nor its token counts.

A replay file is untrusted (users swap them in bug reports): ``recording.parse`` checks
all of it before use (size, depth, types, the route, the method, the headers), the
request can reach nothing but the in-process app, and the app's upstream is the
recording or, with ``--against``, that one URL on the API paths lmsd itself uses.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from ..config import ConfigError, load_settings
from ..fronts.app import create_proxy_app
from ..fronts.drain import Drain
from ..protocol import recording as fmt
from ..sessions.store import SessionStore
from ..upstreams import dialect as dialects
from ..upstreams.client import Upstream
from ..upstreams.recorder import Recorder, RecordingTransport
from .parts import backend_for, router_for

REPLAY_URL = "http://replay.invalid"
_KINDS = {cls.__name__: cls for cls in (
    dialects.ResponsesDialect, dialects.ChatDialect, dialects.LlamaServerDialect,
    dialects.MessagesDialect)}
#: Headers that describe the recorded bytes, not the request sent again.
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "content-encoding"})
#: The requests that make an answer: replay must have each one's recorded answer. A token
#: count or a probe the recording lacks is answered 404 (what a server without one says).
_GENERATIONS = frozenset({"/v1/responses", "/v1/chat/completions", "/v1/messages"})


#: What lmsd itself asks an upstream (generations, token counts, listings, the dialect's
#: and LM Studio's probes): all ``--against`` lets through.
AGAINST_PATHS = frozenset({
    "/v1/responses", "/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens",
    "/v1/models", "/api/v0/models", "/api/v1/models", "/props", "/lmstudio-greeting",
    "/tokenize", "/extras/tokenize/count"})


class ReplayError(ValueError):
    """Replay refuses to run (a bad ``--against`` URL): one line."""


def against_url(url: str) -> httpx.URL:
    """``--against``'s URL, if it is one an upstream can be: http(s), a host, nothing after
    the path."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise ReplayError(f"--against {url!r} is not a URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.query \
            or parsed.fragment:
        raise ReplayError(f"--against {url!r} is not an http(s)://host[:port][/path] URL")
    return parsed


class Confined(httpx.AsyncBaseTransport):
    """``inner``, for requests to ``base``'s scheme, host and port, under its path, on
    ``AGAINST_PATHS`` only; anything else is refused without a connection (lmsd asks
    nothing else today: this keeps it so whatever a file holds)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, base: httpx.URL) -> None:
        self.inner, self.base = inner, base
        self.refused: list[str] = []

    def allows(self, url: httpx.URL) -> bool:
        prefix = self.base.path.rstrip("/")
        return ((url.scheme, url.host, url.port) == (self.base.scheme, self.base.host,
                                                     self.base.port)
                and url.path.startswith(prefix + "/")
                and url.path[len(prefix):] in AGAINST_PATHS)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method not in ("GET", "POST") or not self.allows(request.url):
            self.refused.append(f"{request.method} {request.url}")
            return httpx.Response(403, json={"error": "replay sends nothing there"},
                                  request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[list[Any]]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _, text in self.chunks:
            yield text.encode("utf-8")


def upstream_model(exchange: dict[str, Any]) -> str:
    """The model the recorded upstream requests named (what replay's listing offers)."""
    for entry in exchange.get("upstream", []):
        body = entry.get("body")
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            return body["model"]
    body = exchange["client"].get("body")
    return body.get("model", "model") if isinstance(body, dict) else "model"


class ReplayTransport(httpx.AsyncBaseTransport):
    """Answers each upstream request from the recording; what the recording lacks (a
    models listing, a probe) gets a listing of the recorded model or a 404."""

    def __init__(self, exchange: dict[str, Any]) -> None:
        self.pending = list(exchange.get("upstream", []))
        self.model = upstream_model(exchange)
        self.unmatched: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode("ascii", "replace")
        for index, entry in enumerate(self.pending):
            if entry["method"] == request.method and entry["path"] == path:
                del self.pending[index]
                headers = {k: v for k, v in entry.get("headers", {}).items()
                           if k not in _HOP_HEADERS}
                return httpx.Response(entry["status"], headers=headers,
                                      stream=_Chunks(entry["chunks"]), request=request)
        if request.method == "GET" and path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [
                {"id": self.model, "object": "model", "owned_by": "replay"}]})
        if request.method == "POST" and path in _GENERATIONS:
            self.unmatched.append(f"{request.method} {path}")  # probes may go unanswered
        return httpx.Response(404, json={"error": f"not recorded: {request.method} {path}"})


async def run(exchange: dict[str, Any], *, against: str | None = None,
              settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The exchange ``exchange``'s client request served again: the new exchange."""
    fmt.check(exchange)
    base = against_url(against) if against is not None else None
    replayed: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lmsd-replay-") as state:
        flags = {"upstream": against or REPLAY_URL, "model": upstream_model(exchange),
                 "keep_warm": False, "watch": False, "state_dir": state,
                 # a request that never reached a dialect (a token count) probes nothing
                 "upstream_api": exchange.get("dialect") or ("auto" if against else
                                                             "responses"),
                 **(settings or {})}
        try:
            config = load_settings(flags, {})
        except ConfigError as exc:
            raise ReplayError(str(exc)) from None
        upstream = Upstream(config.upstream, connect_timeout=5.0)
        transport = None if base is not None else ReplayTransport(exchange)
        inner = upstream.client._transport  # httpx has no public setter
        confined = Confined(inner, base) if base is not None else None
        upstream.client._transport = RecordingTransport(
            transport if transport is not None else confined)  # type: ignore[arg-type]
        backend = backend_for(config, upstream)
        kind = _KINDS.get(exchange.get("server") or "")
        if transport is not None and kind is not None:  # as the recording decided
            backend._dialect_for = (upstream.base_url, kind(upstream, "replayed"))
            upstream.name = kind.server_name
        store = SessionStore(None)
        app = create_proxy_app(config, router_for(config, [backend]), store, Drain(),
                               Recorder(None, sink=replayed.append))
        client = exchange["client"]
        try:
            await serve_once(app, client["path"], _request_headers(client.get("headers", {})),
                             _request_body(client["body"]))
        finally:
            await upstream.aclose()
    result = replayed[-1] if replayed else fmt.new_exchange(
        recorded_at=0, method="POST", path=client["path"], headers=(), body=b"")
    if transport is not None:
        result["unmatched_upstream"] = transport.unmatched
    if confined is not None:
        result["refused_upstream"] = confined.refused
    return result


def _request_headers(recorded: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """The recorded request's headers as sent again: the checked allow-list, less what
    describes the recorded bytes, and a Host of the replay's own."""
    return [(b"host", b"127.0.0.1")] + [
        (name.lower().encode("ascii"), value.encode("ascii"))
        for name, value in recorded.items() if name.lower() not in _HOP_HEADERS]


def _request_body(body: Any) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else json.dumps(body).encode()


async def serve_once(app: Any, path: str, headers: list[tuple[bytes, bytes]],
                     body: bytes) -> None:
    """One POST to ``path`` served by ``app`` as an ASGI call, inside a lifespan of its
    own (Quart-Trio runs a stream's producer in the lifespan's nursery): no socket, so
    the request can reach this app and nothing else. Returns when the response ends."""
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
             "http_version": "1.1", "method": "POST", "scheme": "http", "path": path,
             "raw_path": path.encode("ascii"), "query_string": b"", "root_path": "",
             "headers": [*headers, (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 1), "extensions": {}}
    to_life, life_in = trio.open_memory_channel[dict[str, Any]](1)
    life_out, from_life = trio.open_memory_channel[dict[str, Any]](1)
    ended = trio.Event()
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await ended.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            ended.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(app, {"type": "lifespan", "asgi": {"version": "3.0"}},
                           life_in.receive, life_out.send)
        await to_life.send({"type": "lifespan.startup"})
        started = await from_life.receive()
        if started["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the replayed app did not start: {started.get('message')}")
        await app(scope, receive, send)
        ended.set()
        await to_life.send({"type": "lifespan.shutdown"})
        await from_life.receive()


def load(path: Path) -> dict[str, Any]:
    """``path`` read (no more than the format's size limit) and checked whole."""
    with path.open("rb") as file:
        raw = file.read(fmt.MAX_FILE_BYTES + 1)
    return fmt.parse(raw)


async def replay_file(path: Path, *, against: str | None = None) -> tuple[list[str], dict]:
    """(the diff of the client-visible stream, the replayed exchange) for one file. Against
    a live upstream, the tool call ids it mints and the token counts it reports are not
    differences (``recording.diff_streams``'s ``live``); against the recording they are."""
    exchange = load(path)
    result = await run(exchange, against=against)
    return fmt.diff_streams(exchange["client_stream"], result["client_stream"],
                            live=against is not None), result


def main(files: list[str], *, against: str | None = None) -> int:
    """``lmsd replay FILE... [--against URL]``: each file's diff; 1 if any differs, 2 if a
    file cannot be read."""
    status = 0
    for name in files:
        try:
            diff, result = trio.run(partial(replay_file, Path(name), against=against))
        except OSError as exc:
            print(f"lmsd: {name}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        except (ValueError, RecursionError) as exc:  # FormatError, ReplayError
            print(f"lmsd: {name}: {_one_line(exc)}", file=sys.stderr)
            return 2
        except Exception as exc:  # a checked file that still fails: a bug, said in one line
            print(f"lmsd: {name}: replay failed: {type(exc).__name__}: {_one_line(exc)}",
                  file=sys.stderr)
            return 2
        unmatched = result.get("unmatched_upstream") or []
        if diff:
            status = 1
            print(f"{name}: the client-visible result differs")
            print("\n".join(diff))
        else:
            print(f"{name}: same client-visible result")
        refused = result.get("refused_upstream") or []
        if refused:
            print(f"{name}: upstream requests replay refused to send: {', '.join(refused)}")
        if unmatched:
            print(f"{name}: upstream requests the recording has no answer for: "
                  f"{', '.join(unmatched)}")
    return status


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deep to replay"
    return " ".join(str(exc).split()) or type(exc).__name__
