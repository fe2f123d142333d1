"""What a turn's log line and session say of the prefill (``protocol/servers/prefill.py``)."""

from __future__ import annotations

import pytest

from lmsd.protocol.pivot import Usage
from lmsd.protocol.servers.prefill import Timings, prefill_fields, read_timings


def test_llama_server_says_everything():
    usage = Usage(1000, 950, 3, prefilled_tokens=50, prefill_ms=812.5432)
    assert prefill_fields(usage) == {"prefilled_tokens": 50, "cached_tokens": 950,
                                     "prefill_ms": 812.5}


def test_a_cold_cache_is_known_beside_a_prefill():
    assert prefill_fields(Usage(640, 0, 1, prefilled_tokens=640)) == {
        "prefilled_tokens": 640, "cached_tokens": 0}


def test_a_positive_cached_count_alone_is_reported_alone():
    assert prefill_fields(Usage(900, 870, 2)) == {"cached_tokens": 870}


@pytest.mark.parametrize("usage", [None, Usage(900, 0, 2)])
def test_nothing_known_nothing_said(usage):
    """No usage, or a cached 0 with no prefill (LM Studio's stuck 0, llama-cpp-python)."""
    assert prefill_fields(usage) == {}


def test_read_timings():
    assert read_timings({"cache_n": 5, "prompt_n": 7, "prompt_ms": 12, "predicted_n": 3,
                         "predicted_ms": 1.5}) == Timings(7, 5, 12.0, 3)
    assert read_timings({"prompt_n": 1.5, "cache_n": None, "prompt_ms": "1"}) == Timings()
    assert read_timings("x") is None and read_timings(None) is None
