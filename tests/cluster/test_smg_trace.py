"""A turn through SMG is one trace that names the gateway's worker: lmsd's CLIENT span
(and the request's SERVER span) carry ``lmsd.worker`` from SMG's
``x-smg-routed-worker-id`` answer header, the worker SMG's own metrics counted the
request on, and SMG received the client span's ``traceparent``."""

from __future__ import annotations

import httpx
import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra (lmsd[otel]) is not installed")

from tests.engine.llama_server import MODEL_ALIAS
from tests.test_otel import TRACE_ID, TRACEPARENT, running

from .gateway import Gateway

pytestmark = pytest.mark.engine


async def test_a_turns_trace_names_the_gateways_worker(engines, gateway: Gateway, receiver,
                                                      tmp_path):
    cluster = {"name": "cluster", "url": gateway.url, "kind": "chat", "gateway": "smg"}
    async with httpx.AsyncClient(timeout=120) as metrics:
        before = await gateway.worker_requests(metrics)
        async with running(tmp_path, gateway.url, model=MODEL_ALIAS, upstreams=[cluster],
                           upstream_api="chat") as bound, \
                httpx.AsyncClient(base_url=bound.proxy_url, timeout=120) as http:
            answer = await http.post("/v1/messages", json={
                "model": "claude-sonnet-4-6", "max_tokens": 8, "stream": False,
                "messages": [{"role": "user", "content": "hello"}]},
                headers={"traceparent": TRACEPARENT, "x-claude-code-session-id": "s-t"})
            assert answer.status_code == 200, answer.text
        after = await gateway.worker_requests(metrics)
    [worker] = [w for w in after if after[w] - before.get(w, 0) == 1]  # SMG's own count
    [server] = receiver.named("server")
    [client] = receiver.named("client")
    assert server["trace_id"] == client["trace_id"] == TRACE_ID
    assert client["parent"] == server["span_id"]
    assert client["attributes"]["lmsd.worker"] == server["attributes"]["lmsd.worker"]
    assert client["attributes"]["lmsd.worker"] in (worker, worker.rstrip("/"))
