"""Misconfiguration says what to do: the pure parts (a missing or refused upstream key, a chat
answer of HTTP 200 carrying an error). The settings' part is in tests/test_config.py."""

from __future__ import annotations

import pytest

from lmsd.config import env_name
from lmsd.protocol.chat.decode import ChatDecoder
from lmsd.protocol.pivot import Started, TextDelta
from tests.support.pipelines import ChatPipeline

# -- an upstream that wants an API key ----------------------------------------------------------

LMS_401 = ("An LM Studio API token is required to make requests to this server, but none was "
           "provided using the Authorization header using the 'Bearer' scheme")


def test_the_key_setting_named_is_the_real_one():
    from lmsd.protocol.servers.auth import API_KEY_ENV

    assert API_KEY_ENV == env_name("upstream_api_key")


@pytest.mark.parametrize("status", [401, 403])
def test_a_missing_key_says_what_to_set(status):
    from lmsd.protocol.anthropic.errors import render
    from lmsd.protocol.failures import UpstreamAuth
    from lmsd.protocol.servers.auth import key_refused

    failure = key_refused(status, LMS_401, key="")
    assert isinstance(failure, UpstreamAuth)
    err = render(failure)  # as the Anthropic front answers it
    assert (err.status, err.type) == (403, "permission_error")
    assert err.message.startswith("LM Studio requires an API key: set LMSD_UPSTREAM_API_KEY")


def test_a_refused_key_says_so_without_showing_it():
    from lmsd.protocol.anthropic.errors import render
    from lmsd.protocol.failures import UpstreamAuth
    from lmsd.protocol.servers.auth import key_refused

    failure = key_refused(401, "Incorrect API key provided: sk-lm-secret:abc",
                          key="sk-lm-secret:abc")
    assert isinstance(failure, UpstreamAuth)
    err = render(failure)
    assert (err.status, err.type) == (403, "permission_error")
    assert err.message.startswith("LM Studio refused the API key in LMSD_UPSTREAM_API_KEY "
                                  "(HTTP 401: Incorrect API key provided: ***)")
    assert "secret" not in err.message


# -- a chat answer of HTTP 200 with {"error": ...} ------------------------------------------------

UNEXPECTED = ("Unexpected endpoint or method. (POST /v1/chat/completions). "
              "Returning 200 anyway")


def _client_error(payloads: list[str]) -> tuple[str, str]:
    pipeline = ChatPipeline(message_id="msg_1", model="claude-x", input_tokens=10,
                            upstream_name="the upstream server")
    events = [e for p in payloads for e in pipeline.feed(p)]
    events += [e for u in pipeline.decoder.finish() for e in pipeline.encoder.feed(u)]
    errors = [e["error"] for e in events if e["type"] == "error"]
    assert len(errors) == 1, events
    assert not any(e["type"] == "content_block_start" for e in events)
    return errors[0]["type"], errors[0]["message"]


@pytest.mark.parametrize("payloads", [
    [f'{{"error": "{UNEXPECTED}"}}'],  # a plain answer, or one SSE chunk
    [f'{{"error": "{UNEXPECTED}"}}', "[DONE]"],
    [f'{{"id": "c1", "error": "{UNEXPECTED}", "choices": []}}'],
])
def test_a_200_with_an_error_string_is_an_error_naming_it(payloads):
    kind, message = _client_error(payloads)
    assert kind == "api_error" and UNEXPECTED in message


def test_an_error_object_still_is_an_error():
    kind, message = _client_error(['{"error": {"message": "model crashed", "code": "x"}}'])
    assert kind == "api_error" and "model crashed" in message


def test_an_empty_error_string_beside_choices_is_not_an_error():
    decoder = ChatDecoder("msg_1")
    events = decoder.feed('{"error": "", "choices": [{"delta": {"content": "hi"}}]}')
    assert [type(e) for e in events] == [Started, TextDelta]  # a start and its text
