"""Traces (``lmsd/otel.py``) against a real OTLP/HTTP receiver: the SDK's exporter posts
protobuf to ``/v1/traces`` here, decoded with opentelemetry-proto's own message. The
daemon's shutdown flushes the batch processor, so the spans have arrived once it returns."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio

pytest.importorskip("opentelemetry.sdk", reason="the otel extra (lmsd[otel]) is not installed")

from lmsd import otel
from lmsd.config import load_settings
from lmsd.daemon.supervisor import Bound, serve
from tests.support.boxes import boxes, upstreams
from tests.support.daemon import MODEL
from tests.support.otlp import OTEL_VARS

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
@asynccontextmanager
async def running(tmp_path: Any, upstream: str, **overrides: Any) -> AsyncIterator[Bound]:
    """An lmsd serving for the block; stopped (its aclose run) when the block ends."""
    flags = {"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0", "upstream": upstream,
             "state_dir": str(tmp_path / "state"), "watch": "false", **overrides}
    settings = load_settings(flags, {})
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        bound: Bound = await nursery.start(partial(serve, settings, shutdown=shutdown))
        try:
            yield bound
        finally:
            shutdown.set()


def messages(text: str) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 64, "stream": False,
            "messages": [{"role": "user", "content": text}]}


async def test_a_turn_is_one_trace_from_the_client_to_the_engine(receiver, emulator,
                                                                 tmp_path):
    """The client's traceparent is continued: lmsd's SERVER span is its child, the CLIENT
    span of the upstream request is the server span's, and the engine received a
    traceparent naming that client span. GenAI and lmsd attributes are on the spans."""
    emulator.llama_server = True  # its timings say what it prefilled, held, and how long
    emulator.usage_mode = "openai"
    async with running(tmp_path, emulator.url, upstream_api="chat") as bound, \
            httpx.AsyncClient(base_url=bound.proxy_url, timeout=30) as http:
        assert otel.enabled()
        headers = {"traceparent": TRACEPARENT, "x-claude-code-session-id": "sess-1"}
        body = messages("hello")
        first = await http.post("/v1/messages", json=body, headers=headers)
        assert first.status_code == 200, first.text
        body["messages"] += [{"role": "assistant", "content": first.json()["content"]},
                             {"role": "user", "content": "and again"}]
        second = await http.post("/v1/messages", json=body, headers=headers)
        assert second.status_code == 200, second.text
    assert not otel.enabled()  # shut down with the daemon
    assert receiver.paths and set(receiver.paths) == {"/v1/traces"}
    servers, clients = receiver.named("server"), receiver.named("client")
    assert len(servers) == 2 and len(clients) == 2
    for server in servers:
        assert server["trace_id"] == TRACE_ID and server["parent"] == PARENT_ID
        assert server["name"] == f"chat {MODEL}" and server["service"] == "lmsd"
        attrs = server["attributes"]
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.request.model"] == MODEL
        assert attrs["gen_ai.response.model"]
        assert attrs["gen_ai.usage.input_tokens"] > 0
        assert attrs["gen_ai.usage.output_tokens"] > 0
        assert attrs["session.id"] == attrs["gen_ai.conversation.id"] == "sess-1"
        assert attrs["lmsd.session"] == "sess-1" and attrs["lmsd.agent"] == "main"
        assert attrs["lmsd.front"] == "anthropic" and attrs["lmsd.outcome"] == "ok"
        assert attrs["lmsd.request_id"].startswith("req_")
        assert attrs["gen_ai.response.finish_reasons"] == ["end_turn"]
        assert "lmsd.duration_ms" in attrs and "lmsd.upstream_first_byte_ms" in attrs
    by_id = {s["span_id"]: s for s in servers}
    generations = [r for r in emulator.log if r.path == "/v1/chat/completions"]
    assert len(generations) == 2
    for client, sent in zip(clients, generations, strict=True):
        assert client["trace_id"] == TRACE_ID and client["parent"] in by_id
        assert client["attributes"]["http.response.status_code"] == 200
        assert client["attributes"]["gen_ai.provider.name"]
        assert sent.headers["traceparent"] == f"00-{TRACE_ID}-{client['span_id']}-01"
    # What the engine prefilled, and (the second turn) what its prefix cache held.
    assert all(s["attributes"]["lmsd.prefilled_tokens"] > 0 for s in servers)
    assert all("lmsd.prefill_ms" in s["attributes"] for s in servers)
    assert servers[1]["attributes"]["gen_ai.usage.cache_read.input_tokens"] > 0


async def test_a_failover_is_on_the_span_with_its_cause(receiver, nursery, tmp_path):
    """The upstream holding a session goes away: its next turn moves to the other before
    its first token. One CLIENT span per upstream request (the dead one's failed, the
    other's answered), and the server span says why it moved."""
    a, b = await boxes(nursery, "a", "b")
    sid = {"x-claude-code-session-id": "sess-2"}
    async with running(tmp_path, a.url, upstreams=upstreams(a, b),
                       poll_interval="60") as bound, \
            httpx.AsyncClient(base_url=bound.proxy_url, timeout=30) as http:
        first = await http.post("/v1/messages", json=messages("hello"), headers=sid)
        assert first.status_code == 200, first.text
        held, other = (a, b) if a.generations() else (b, a)
        await held.stop()
        moved = await http.post("/v1/messages", json=messages("hello again"), headers=sid)
        assert moved.status_code == 200, moved.text
    servers = receiver.named("server")
    assert len(servers) == 2 and all(s["parent"] == "" for s in servers)  # new traces
    attrs = servers[1]["attributes"]
    assert attrs["lmsd.failover.cause"] == "unreachable"
    assert attrs["lmsd.failover.from"] == [held.name] and attrs["lmsd.upstream"] == other.name
    assert "lmsd.failover" in servers[1]["events"]
    clients = [c for c in receiver.named("client") if c["trace_id"] == servers[1]["trace_id"]]
    assert [c["attributes"]["lmsd.upstream"] for c in clients] == [held.name, other.name]
    assert all(c["parent"] == servers[1]["span_id"] for c in clients)
    assert clients[0]["status"] == 2 and clients[0]["attributes"]["error.type"] == "unreachable"
    assert other.generations()[-1].headers["traceparent"].split("-")[2] == \
        clients[1]["span_id"]


async def test_off_unless_an_endpoint_is_configured(monkeypatch, emulator, tmp_path):
    """Without an endpoint (or with the SDK disabled) nothing is set up: no tracer, no
    export thread, the upstream client's transport untouched, no traceparent sent."""
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)
    assert otel.setup() is None
    assert otel.setup({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"}
                      ) is None
    assert otel.setup({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x",
                       "OTEL_TRACES_EXPORTER": "none"}) is None
    assert otel.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})
    async with running(tmp_path, emulator.url) as bound, \
            httpx.AsyncClient(base_url=bound.proxy_url, timeout=30) as http:
        assert not otel.enabled()
        client = bound.router.backends[0].upstream.client
        assert not isinstance(client._transport.inner, otel.TracedTransport)
        answer = await http.post("/v1/messages", json=messages("hello"),
                                 headers={"traceparent": TRACEPARENT})
        assert answer.status_code == 200
        assert not [t.name for t in threading.enumerate() if t.name.startswith("Otel")]
    sent = [r for r in emulator.log if r.path == "/v1/responses"]
    assert sent and "traceparent" not in sent[-1].headers
