"""The Prometheus series, fed events by hand: every request and turn series is labelled by
the front the client spoke; events without a front (older code) count as Anthropic's."""

from __future__ import annotations

from typing import Any

import pytest

from lmsd.metrics import Metrics


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def end(front: str | None, **fields: Any) -> dict[str, Any]:
    event = {"type": "request.end", "outcome": "ok", "stream": True, "duration_ms": 120,
             "ttft_ms": 40, "upstream_ms": 30, "input_tokens": 100, "output_tokens": 7,
             **fields}
    if front is not None:
        event["front"] = front
    return event


@pytest.mark.parametrize("front", ["anthropic", "openai_responses", "openai_chat"])
def test_a_request_counts_under_its_front(front):
    m = Metrics()
    m.observe({"type": "request.start", "front": front})
    assert value(m, "lmsd_requests_in_flight", front=front) == 1
    m.observe({"type": "chain.decision", "front": front, "chained": False,
               "miss": "no_node"})
    m.observe(end(front))
    assert value(m, "lmsd_requests_in_flight", front=front) == 0
    assert value(m, "lmsd_requests_total", front=front, outcome="ok", stream="True") == 1
    assert value(m, "lmsd_chain_decisions_total", front=front, result="miss_no_node") == 1
    assert value(m, "lmsd_time_to_first_token_seconds_count", front=front) == 1
    assert value(m, "lmsd_request_duration_seconds_sum", front=front) == pytest.approx(0.12)
    assert value(m, "lmsd_upstream_first_event_seconds_count", front=front) == 1
    assert value(m, "lmsd_input_tokens_total", front=front) == 100
    assert value(m, "lmsd_output_tokens_total", front=front) == 7
    others = {"anthropic", "openai_responses", "openai_chat"} - {front}
    for other in others:
        assert value(m, "lmsd_requests_total", front=other, outcome="ok",
                     stream="True") is None
        assert value(m, "lmsd_requests_in_flight", front=other) == 0  # there from the start
    assert m.totals == {"requests": 1, "errors": 0, "in_flight": 0}


def test_events_without_a_front_count_as_anthropic():
    m = Metrics()
    m.observe({"type": "request.start"})
    m.observe({"type": "chain.decision", "chained": True})
    m.observe(end(None, outcome="error", error_type="api_error", error="boom"))
    m.observe({"type": "request.rejected", "error_type": "invalid_request_error"})
    m.observe({"type": "request.too_long"})
    assert value(m, "lmsd_requests_in_flight", front="anthropic") == 0
    assert value(m, "lmsd_chain_decisions_total", front="anthropic", result="hit") == 1
    assert value(m, "lmsd_requests_total", front="anthropic", outcome="error",
                 stream="True") == 1
    assert value(m, "lmsd_requests_total", front="anthropic", outcome="rejected",
                 stream="n/a") == 1
    assert value(m, "lmsd_errors_total", front="anthropic", type="api_error") == 1
    assert value(m, "lmsd_errors_total", front="anthropic",
                 type="invalid_request_error") == 1
    assert value(m, "lmsd_context_overflows_total", front="anthropic",
                 where="before_sending") == 1
    assert m.totals == {"requests": 2, "errors": 2, "in_flight": 0}


def test_overflows_by_front_and_where():
    m = Metrics()
    m.observe({"type": "request.too_long", "front": "openai_chat"})
    m.observe(end("anthropic", outcome="error", error_type="invalid_request_error",
                  error="prompt is too long: 40000 tokens > 32768 maximum"))
    m.observe(end("openai_responses", outcome="error", error_type="ContextOverflow",
                  error="This model's maximum context length is 400 tokens.",
                  overflow=True))
    m.observe(end("openai_chat", outcome="error", error_type="server_error",
                  error="upstream failed"))  # not an overflow
    assert value(m, "lmsd_context_overflows_total", front="openai_chat",
                 where="before_sending") == 1
    assert value(m, "lmsd_context_overflows_total", front="anthropic", where="engine") == 1
    assert value(m, "lmsd_context_overflows_total", front="openai_responses",
                 where="engine") == 1
    assert value(m, "lmsd_context_overflows_total", front="openai_chat",
                 where="engine") is None
    assert value(m, "lmsd_errors_total", front="openai_chat", type="server_error") == 1


def test_rejected_requests_by_front():
    m = Metrics()
    m.observe({"type": "request.rejected", "front": "openai_responses",
               "error_type": "invalid_request_error"})
    assert value(m, "lmsd_requests_total", front="openai_responses", outcome="rejected",
                 stream="n/a") == 1
    assert value(m, "lmsd_errors_total", front="openai_responses",
                 type="invalid_request_error") == 1


def test_prefilled_and_cached_tokens_count_by_upstream():
    """The engine's own counts, where it said; a turn whose engine said nothing moves
    nothing."""
    m = Metrics()
    for front in ("anthropic", "anthropic", "openai_chat"):
        m.observe({"type": "request.start", "front": front})
    m.observe(end("anthropic", upstream="gpu", prefilled_tokens=1000, cached_tokens=0,
                  prefill_ms=4000.0))
    m.observe(end("anthropic", upstream="gpu", prefilled_tokens=40, cached_tokens=1001,
                  prefill_ms=150.0))
    m.observe(end("openai_chat", upstream="lms"))
    assert value(m, "lmsd_prefilled_tokens_total", upstream="gpu") == 1040
    assert value(m, "lmsd_cached_tokens_total", upstream="gpu") == 1001
    assert value(m, "lmsd_prefill_seconds_count", upstream="gpu") == 2
    assert value(m, "lmsd_prefill_seconds_sum", upstream="gpu") == pytest.approx(4.15)
    assert value(m, "lmsd_prefilled_tokens_total", upstream="lms") is None
    assert value(m, "lmsd_cached_tokens_total", upstream="lms") is None
