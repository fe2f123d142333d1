"""protocol/clients/resends.py: a resend that will fail the same way is known before it is sent."""

from __future__ import annotations

from lmsd.protocol.clients.resends import Resends
from lmsd.protocol.failures import (
    ContextOverflow,
    NotFound,
    Overloaded,
    UpstreamAuth,
    UpstreamFailure,
    UpstreamRejected,
)

KEY = ("s1", "main", "qwen")
BODY = {"model": "qwen", "input": [{"role": "user", "content": "x" * 4000}], "stream": True,
        "max_output_tokens": 32000}


def over(n: int = 40000, m: int = 32768) -> ContextOverflow:
    return ContextOverflow("overflow", prompt_tokens=n, context_limit=m)


def test_the_non_streamed_retry_of_an_overflow_is_answered_with_the_engines_count():
    r = Resends()
    assert r.note(KEY, BODY, BODY, over(), limit=32768, now=0.0)
    resend = {**BODY, "stream": False, "max_output_tokens": 64000}
    known = r.recall(KEY, resend, resend, limit=32768, now=1.0)
    assert isinstance(known, ContextOverflow)
    assert (known.prompt_tokens, known.context_limit) == (40000, 32768)


def test_a_larger_prompt_after_an_overflow_is_over_too_a_much_smaller_one_is_sent():
    r = Resends()
    r.note(KEY, BODY, BODY, over(40000, 32768), limit=None, now=0.0)
    larger = {**BODY, "input": BODY["input"] + [{"role": "user", "content": "summarize"}]}
    assert isinstance(r.recall(KEY, larger, larger, limit=None, now=1.0), ContextOverflow)
    shorter = {**BODY, "input": [{"role": "user", "content": "x" * 3800}]}  # still ~38k
    known = r.recall(KEY, shorter, shorter, limit=None, now=1.0)
    assert isinstance(known, ContextOverflow) and 32768 * 1.1 < known.prompt_tokens < 40000
    compacted = {**BODY, "input": [{"role": "user", "content": "x" * 3000}]}  # ~30k: fits?
    assert r.recall(KEY, compacted, compacted, limit=None, now=1.0) is None


def test_a_refusal_is_recalled_only_for_the_same_request():
    r = Resends()
    refused = UpstreamRejected("LM Studio rejected the request: bad image")
    assert r.note(KEY, BODY, BODY, refused, limit=None, now=0.0)
    assert r.recall(KEY, {**BODY, "stream": False}, BODY, limit=None, now=1.0) is refused
    other = {**BODY, "input": [{"role": "user", "content": "another"}]}
    assert r.recall(KEY, other, other, limit=None, now=1.0) is None


def test_memory_is_per_conversation_expires_and_ends_with_a_new_limit():
    r = Resends(ttl=60.0)
    r.note(KEY, BODY, BODY, over(), limit=32768, now=0.0)
    assert r.recall(("s2", "main", "qwen"), BODY, BODY, limit=32768, now=1.0) is None
    assert r.recall(KEY, BODY, BODY, limit=65536, now=1.0) is None  # reloaded larger
    r.note(KEY, BODY, BODY, over(), limit=32768, now=0.0)
    assert r.recall(KEY, BODY, BODY, limit=32768, now=61.0) is None


def test_a_missing_model_or_refused_key_is_recalled_only_for_the_immediate_resend():
    said = UpstreamFailure(message="model not found")
    for failure in (NotFound("model not found", upstream=said),
                    UpstreamAuth("refused the API key", upstream=said)):
        r = Resends()
        assert r.note(KEY, BODY, BODY, failure, limit=None, now=0.0)
        assert r.recall(KEY, {**BODY, "stream": False}, BODY, limit=None, now=0.5) is failure
        assert r.recall(KEY, BODY, BODY, limit=None, now=6.0) is None  # the user fixed it?


def test_failures_a_retry_may_get_past_are_not_remembered():
    r = Resends()
    for failure in (Overloaded("busy"), NotFound("no such session"),
                    ContextOverflow("overflow, numbers unknown")):
        assert not r.note(KEY, BODY, BODY, failure, limit=None, now=0.0)
        assert r.recall(KEY, BODY, BODY, limit=None, now=0.0) is None
