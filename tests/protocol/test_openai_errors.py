"""Neutral failures in OpenAI's words, as both OpenAI fronts answer them."""

import pytest

from lmsd.protocol.failures import (
    ContextOverflow,
    HTTPRefusal,
    Internal,
    NotFound,
    Overloaded,
    StaleChain,
    Unreachable,
    UpstreamBroken,
    UpstreamRejected,
    as_error,
    classify,
    invalid,
)
from lmsd.protocol.openai_errors import CONTEXT_LENGTH_EXCEEDED, render_openai


def test_an_overflow_is_a_400_codex_recognizes():
    error = render_openai(ContextOverflow("raw", prompt_tokens=5000, context_limit=4096))
    assert (error.status, error.code) == (400, CONTEXT_LENGTH_EXCEEDED)
    assert "4096" in error.message and "5000" in error.message
    assert error.body() == {"error": {"message": error.message,
                                      "type": "invalid_request_error", "param": None,
                                      "code": CONTEXT_LENGTH_EXCEEDED}}


def test_an_overflow_without_numbers_keeps_the_servers_words():
    failure = as_error(classify("Context size has been exceeded."), 500, name="LM Studio")
    assert render_openai(failure).message == "Context size has been exceeded."


@pytest.mark.parametrize(("failure", "status"), [
    (invalid("messages: required"), 400),
    (NotFound("model: 'x'"), 404),
    (Overloaded("busy"), 429),
    (Unreachable("down"), 503),
    (UpstreamBroken("boom"), 502),
    (UpstreamRejected("bad image"), 400),
    (Internal("bug"), 500),
    (HTTPRefusal("Method Not Allowed", 405), 405),
])
def test_status_by_kind(failure, status):
    assert render_openai(failure).status == status


def test_retry_after_only_when_busy():
    assert render_openai(Overloaded("busy")).headers == {"retry-after": "2"}
    assert render_openai(UpstreamBroken("boom")).headers == {}


def test_a_stale_chain_shown_is_the_servers_answer_on_its_own():
    failure = as_error(classify("Previous response with id 'r' not found."), 400,
                       name="LM Studio")
    assert isinstance(failure, StaleChain)
    assert render_openai(failure).status == 400


def test_a_bad_request_names_its_field_as_param():
    assert render_openai(invalid("messages.0.content: expected a string, got null")
                         ).param == "messages.0.content"
    assert render_openai(invalid("the body is not JSON")).param is None
    assert render_openai(UpstreamRejected("LM Studio rejected the request: x: y")
                         ).param is None
