"""Prometheus metrics, fed by the event bus (``GET /metrics`` on the admin API).

The request and turn series carry a ``front`` label (``anthropic``, ``openai_responses``,
``openai_chat``), read from the events' ``front`` field; an event without one (older code,
lmsd's own routes) counts as ``anthropic``. The ``lmsd_upstream_*`` series carry the
upstream's name (several upstreams), read from the events' ``upstream`` field, as do the
prefill series (``lmsd_prefilled_tokens``, ``lmsd_cached_tokens``, ``lmsd_prefill_seconds``),
fed by the turns whose engine said what it prefilled. ``lmsd_client_requests`` counts the
requests of each keyed client (a proxy shared on a network): its ``client`` label is a
key's name, so the key list bounds it.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
FRONTS = ("anthropic", "openai_responses", "openai_chat")
DEFAULT_FRONT = FRONTS[0]  # events before the OpenAI fronts carried no front

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("lmsd_requests", "Requests by outcome, stream and front",
                                ["outcome", "stream", "front"], registry=r)
        self.errors = Counter("lmsd_errors", "Requests that ended in an error, by type",
                              ["type", "front"], registry=r)
        self.in_flight = Gauge("lmsd_requests_in_flight", "Requests being served",
                               ["front"], registry=r)
        self.ttft = Histogram("lmsd_time_to_first_token_seconds", "Time to first content",
                              ["front"], buckets=LATENCY_BUCKETS, registry=r)
        self.duration = Histogram("lmsd_request_duration_seconds", "Whole request time",
                                  ["front"], buckets=LATENCY_BUCKETS, registry=r)
        self.upstream_latency = Histogram(
            "lmsd_upstream_first_event_seconds", "Time until LM Studio's first stream event",
            ["front"], buckets=LATENCY_BUCKETS, registry=r)
        self.input_tokens = Counter("lmsd_input_tokens", "Prompt tokens (whole context)",
                                    ["front"], registry=r)
        self.output_tokens = Counter("lmsd_output_tokens", "Generated tokens", ["front"],
                                     registry=r)
        self.chain = Counter("lmsd_chain_decisions", "Chained turns and misses by reason",
                             ["result", "front"], registry=r)
        self.reloads = Counter("lmsd_model_reloads", "Model reloads by the watcher",
                               ["result"], registry=r)
        self.loads = Counter("lmsd_model_loads", "Models lmsd loaded for a request",
                             ["result"], registry=r)
        self.load_seconds = Histogram("lmsd_model_load_seconds", "How long a load lmsd "
                                      "asked for took", buckets=LATENCY_BUCKETS, registry=r)
        self.unloads = Counter("lmsd_model_unloads", "Models lmsd unloaded, by cause: group "
                               "(another of its group took its turn), budget, ttl (idle)",
                               ["cause"], registry=r)
        self.swaps = Counter("lmsd_model_swaps", "Loads that unloaded another model first",
                             registry=r)
        self.upstream_up = Gauge("lmsd_upstream_up", "1 when the upstream answers its "
                                 "watcher's polls", ["upstream"], registry=r)
        self.upstream_requests = Counter("lmsd_upstream_requests", "Requests by the "
                                         "upstream that served them, and outcome",
                                         ["upstream", "outcome"], registry=r)
        self.upstream_ttft = Histogram("lmsd_upstream_time_to_first_token_seconds",
                                       "Time to first content, by upstream", ["upstream"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.in_rotation = Gauge("lmsd_upstream_in_rotation", "1 while the upstream's "
                                 "circuit breaker lets requests through", ["upstream"],
                                 registry=r)
        self.placements = Counter("lmsd_upstream_placements", "Conversations placed on an "
                                  "upstream (new, moved), by why", ["upstream", "why"],
                                  registry=r)
        self.failovers = Counter("lmsd_upstream_failovers", "Requests moved to another "
                                 "upstream before their first token", ["from_upstream",
                                                                        "to_upstream"],
                                 registry=r)
        self.refused = Counter("lmsd_refused_requests", "Requests a web page could have sent "
                               "(foreign Host or Origin, non-JSON body), by app and status",
                               ["app", "status"], registry=r)
        self.overflows = Counter("lmsd_context_overflows", "Prompts over the loaded context: "
                                 "refused before sending, or reported by the engine",
                                 ["where", "front"], registry=r)
        self.repaired = Counter("lmsd_tool_calls_repaired", "Tool calls printed as text "
                                "that lmsd made real calls, by format",
                                ["format", "front"], registry=r)
        self.prefilled = Counter("lmsd_prefilled_tokens", "Prompt tokens the engine computed "
                                 "(where it said), by upstream", ["upstream"], registry=r)
        self.cached = Counter("lmsd_cached_tokens", "Prompt tokens the engine's prefix cache "
                              "held (where it said), by upstream", ["upstream"], registry=r)
        self.prefill = Histogram("lmsd_prefill_seconds", "The engine's prompt processing "
                                 "time (where it said), by upstream", ["upstream"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.client_requests = Counter("lmsd_client_requests", "Requests of each keyed "
                                       "client, by outcome", ["client", "outcome"],
                                       registry=r)
        for front in FRONTS:  # 0 in flight from the start, not absent until a request
            self.in_flight.labels(front)
        self.totals = {"requests": 0, "errors": 0, "in_flight": 0}

    def observe(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        front = str(event.get("front") or DEFAULT_FRONT)
        if kind == "request.start":
            self.in_flight.labels(front).inc()
            self.totals["in_flight"] += 1
        elif kind == "request.end":
            self._request_end(event, front)
        elif kind == "request.rejected":
            self.requests.labels("rejected", "n/a", front).inc()
            self.errors.labels(event.get("error_type", "?"), front).inc()
            self.totals["requests"] += 1
            self.totals["errors"] += 1
        elif kind == "request.refused":
            self.refused.labels(str(event.get("app", "?")), str(event.get("status", "?"))).inc()
        elif kind == "request.too_long":
            self.overflows.labels("before_sending", front).inc()
        elif kind == "chain.decision":
            self.chain.labels("hit" if event.get("chained") else
                              "unchained" if event.get("unchained") else
                              f"miss_{event.get('miss')}", front).inc()
        elif kind == "tool_call.repaired":
            self.repaired.labels(str(event.get("format", "?")), front).inc()
        elif kind == "model.context_enforced":
            self.reloads.labels("ok").inc()
        elif kind == "model.reload_failed":
            self.reloads.labels("failed").inc()
        elif kind == "model.load":
            self.loads.labels("ok").inc()
            self.load_seconds.observe(float(event.get("seconds") or 0))
        elif kind == "model.load_failed":
            self.loads.labels("failed").inc()
        elif kind == "model.swap":
            self.swaps.inc()
        elif kind == "model.unload":
            self.unloads.labels(str(event.get("cause") or "?")).inc()
        elif kind in ("upstream.up", "upstream.down"):
            self.upstream_up.labels(_upstream(event)).set(kind == "upstream.up")
        elif kind in ("upstream.out", "upstream.rejoined"):
            self.in_rotation.labels(_upstream(event)).set(kind == "upstream.rejoined")
        elif kind == "upstream.placed":
            why = str(event.get("why", "?")).partition(":")[0]
            self.placements.labels(_upstream(event), why).inc()
        elif kind == "upstream.failover":
            self.failovers.labels(str(event.get("failed", "?")), str(event.get("to", "?"))).inc()

    def _request_end(self, event: dict[str, Any], front: str) -> None:
        self.in_flight.labels(front).dec()
        self.totals["in_flight"] -= 1
        self.totals["requests"] += 1
        self.totals["errors"] += bool(event.get("error_type"))
        self.requests.labels(event.get("outcome", "?"), str(event.get("stream")), front).inc()
        if event.get("client"):
            self.client_requests.labels(str(event["client"]), event.get("outcome", "?")).inc()
        if event.get("error_type"):
            self.errors.labels(event["error_type"], front).inc()
        if event.get("overflow") or str(event.get("error", "")).startswith("prompt is too long"):
            self.overflows.labels("engine", front).inc()
        if "ttft_ms" in event:
            self.ttft.labels(front).observe(event["ttft_ms"] / 1000)
        if "upstream" in event:
            self.upstream_requests.labels(_upstream(event), event.get("outcome", "?")).inc()
            if "ttft_ms" in event:
                self.upstream_ttft.labels(_upstream(event)).observe(event["ttft_ms"] / 1000)
        if "upstream_ms" in event:
            self.upstream_latency.labels(front).observe(event["upstream_ms"] / 1000)
        self.duration.labels(front).observe(event.get("duration_ms", 0) / 1000)
        self.input_tokens.labels(front).inc(event.get("input_tokens", 0))
        self.output_tokens.labels(front).inc(event.get("output_tokens", 0))
        if "prefilled_tokens" in event:
            self.prefilled.labels(_upstream(event)).inc(event["prefilled_tokens"])
        if "cached_tokens" in event:
            self.cached.labels(_upstream(event)).inc(event["cached_tokens"])
        if "prefill_ms" in event:
            self.prefill.labels(_upstream(event)).observe(event["prefill_ms"] / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _upstream(event: dict[str, Any]) -> str:
    return str(event.get("upstream") or "default")
