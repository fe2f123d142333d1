"""``lmsd replay FILE``: a recorded exchange run again through the current code.

The proxy app is built in-process over one upstream whose transport answers from the
recording (``ReplayTransport``: each upstream request gets the recorded answer to the
same method and path, in order, chunk by chunk; no network), or, with ``--against
URL``, over that live upstream. The recorded client request is sent through a loopback
port and the client-visible stream is recorded as it was the first time, then
compared after normalizing (``protocol/recording.py``): ids, clocks and pings differ on
every run and are not differences.
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
from hypercorn.config import Config
from hypercorn.trio import serve

from ..config import load_settings
from ..fronts.app import create_proxy_app
from ..fronts.drain import Drain
from ..protocol import recording as fmt
from ..sessions.store import SessionStore
from ..upstreams import dialect as dialects
from ..upstreams.client import Upstream
from ..upstreams.recorder import Recorder, RecordingTransport
from ..upstreams.router import Backend, Router

REPLAY_URL = "http://replay.invalid"
_KINDS = {cls.__name__: cls for cls in (
    dialects.ResponsesDialect, dialects.ChatDialect, dialects.LlamaServerDialect,
    dialects.MessagesDialect)}
#: Headers that describe the recorded bytes, not the request sent again.
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "content-encoding"})
#: The requests that make an answer: replay must have each one's recorded answer. A token
#: count or a probe the recording lacks is answered 404 (what a server without one says).
_GENERATIONS = frozenset({"/v1/responses", "/v1/chat/completions", "/v1/messages"})


def _loopback() -> Config:
    """The replayed app is served on a loopback port of its own: Quart's test client
    never ends a streamed body whose producer runs in its own nursery."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.loglevel = "WARNING"
    config.graceful_timeout = 0.5
    return config


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
    replayed: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lmsd-replay-") as state:
        flags = {"upstream": against or REPLAY_URL, "model": upstream_model(exchange),
                 "keep_warm": False, "watch": False, "state_dir": state,
                 # a request that never reached a dialect (a token count) probes nothing
                 "upstream_api": exchange.get("dialect") or ("auto" if against else
                                                             "responses"),
                 **(settings or {})}
        config = load_settings(flags, {})
        upstream = Upstream(config.upstream, connect_timeout=5.0)
        transport = None if against else ReplayTransport(exchange)
        if transport is not None:
            upstream.client._transport = RecordingTransport(transport)  # no network
        backend = Backend(config, upstream)
        kind = _KINDS.get(exchange.get("server") or "")
        if transport is not None and kind is not None:  # as the recording decided
            backend._dialect_for = (upstream.base_url, kind(upstream, "replayed"))
            upstream.name = kind.server_name
        store = SessionStore(None)
        app = create_proxy_app(config, Router(config, [backend]), store, Drain(),
                               Recorder(None, sink=replayed.append))
        client = exchange["client"]
        body = client["body"]
        data = json.dumps(body).encode() if not isinstance(body, str) else body.encode()
        headers = {k: v for k, v in client.get("headers", {}).items()
                   if k not in _HOP_HEADERS}
        try:
            async with trio.open_nursery() as nursery:
                binds = await nursery.start(partial(
                    serve, app, _loopback(), shutdown_trigger=trio.sleep_forever))
                async with httpx.AsyncClient(base_url=binds[0], timeout=None) as http:
                    await http.request(client.get("method", "POST"), client["path"],
                                       content=data, headers=headers)
                nursery.cancel_scope.cancel()
        finally:
            await upstream.aclose()
    result = replayed[-1] if replayed else fmt.new_exchange(
        recorded_at=0, method="POST", path=client["path"], headers=(), body=b"")
    if transport is not None:
        result["unmatched_upstream"] = transport.unmatched
    return result


def load(path: Path) -> dict[str, Any]:
    return fmt.check(json.loads(path.read_text(encoding="utf-8")))


async def replay_file(path: Path, *, against: str | None = None) -> tuple[list[str], dict]:
    """(the diff of the client-visible stream, the replayed exchange) for one file."""
    exchange = load(path)
    result = await run(exchange, against=against)
    return fmt.diff_streams(exchange["client_stream"], result["client_stream"]), result


def main(files: list[str], *, against: str | None = None) -> int:
    """``lmsd replay FILE... [--against URL]``: each file's diff; 1 if any differs, 2 if a
    file cannot be read."""
    status = 0
    for name in files:
        try:
            diff, result = trio.run(partial(replay_file, Path(name), against=against))
        except (OSError, ValueError) as exc:
            print(f"lmsd: {name}: {exc}", file=sys.stderr)
            return 2
        unmatched = result.get("unmatched_upstream") or []
        if diff:
            status = 1
            print(f"{name}: the client-visible result differs")
            print("\n".join(diff))
        else:
            print(f"{name}: same client-visible result")
        if unmatched:
            print(f"{name}: upstream requests the recording has no answer for: "
                  f"{', '.join(unmatched)}")
    return status
