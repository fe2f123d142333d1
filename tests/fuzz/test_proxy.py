"""Hostile requests to every route of the proxy port: never a 5xx, never a traceback.

Each front gets valid requests and mutations of them (wrong types, huge numbers, NaN,
lone surrogates, deep nesting, empty, binary, wrong content types), under every way to
name a session (the plain route, ``/session/ID/``, the session headers)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.fuzz import strategies as s
from tests.fuzz.check import examples, exchange

pytestmark = pytest.mark.fuzz
SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck))


def session_prefixed(route: str) -> st.SearchStrategy[str]:
    """Mostly the plain route (``/v1/responses`` has no ``/session/ID/`` form: a 404)."""
    ids = s.mostly(s.good_ids, s.odd_ids, percent=50)
    return s.mostly(st.just(route), ids.map(
        lambda sid: f"/session/{s.path_segment(sid)}{route}"), percent=75)


def front(route: str, bodies: st.SearchStrategy[bytes]) -> st.SearchStrategy[tuple]:
    return st.tuples(session_prefixed(route), s.headers(), bodies)


@settings(max_examples=examples(500), **SETTINGS)
@given(st.one_of(front("/v1/messages", s.body_for(s.MESSAGES)),
                 front("/v1/messages", s.body_for(s.claude_body("basic_json", 1))),
                 front("/v1/messages/count_tokens", s.body_for(s.MESSAGES))))
@example(("/v1/messages", [("Content-Type", "application/json")],
          b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", '
          b'"content": "\\ud800"}]}'))  # was a 500: a lone surrogate, hashing the turn
def test_messages_front(live, case):
    path, headers, body = case
    exchange(live, "proxy", "POST", path, headers, body)


@settings(max_examples=examples(400), **SETTINGS)
@given(front("/v1/chat/completions", s.body_for(s.CHAT)))
@example(("/v1/chat/completions", [("Content-Type", "application/json")],
          b'{"model": "m", "messages": [{"role": "user", "content": "x\\udfffy"}]}'))
def test_chat_front(live, case):
    path, headers, body = case
    exchange(live, "proxy", "POST", path, headers, body)


@settings(max_examples=examples(400), **SETTINGS)
@given(st.one_of(front("/v1/responses", s.body_for(s.RESPONSES)),
                 front("/v1/responses", s.body_for(s.captured_codex()))))
@example(("/v1/responses", [("Content-Type", "application/json"),
                            ("x-codex-turn-metadata", "[" * 6000)],
          b'{"model": "m", "input": "hi"}'))  # was a 500: RecursionError reading the header
@example(("/v1/responses", [("Content-Type", "application/json")],
          b'{"model": "m", "input": "\\ud800"}'))  # was a 500: a lone surrogate
def test_responses_front(live, case):
    path, headers, body = case
    exchange(live, "proxy", "POST", path, headers, body)


@settings(max_examples=examples(300), **SETTINGS)
@given(s.odd_ids, st.sampled_from(["GET", "PUT", "PUT", "POST", "DELETE"]), s.headers(),
       s.body_for(s.CONFIG))
def test_session_config(live, sid, method, headers, body):
    exchange(live, "proxy", method, f"/session/{s.path_segment(sid)}/config", headers,
             body if method != "GET" else b"")


ROUTES = ["/", "/api/hello", "/v1/models", "/v1/models/claude-sonnet-4-5",
          "/v1/models/qwen/qwen3-coder-30b", "/v1/messages", "/v1/chat/completions",
          "/v1/responses", "/v1/messages/count_tokens", "/nope", "/v1", "/v1/", "/session/",
          "/session/a", "/session/a/v1/nope", "/favicon.ico", "/v1/messages/x/y", "//",
          "/..", "/%2e%2e/admin", "/v1/models/", "/v1/models/%00", "/v1/models/%ED%A0%80",
          "/sessions", "/status", "/events", "/v1/messages/batches", "*"]


@settings(max_examples=examples(500), **SETTINGS)
@given(st.one_of(st.just("GET"), s.methods), st.one_of(st.sampled_from(ROUTES), s.odd_ids.map(
    lambda i: "/v1/models/" + s.path_segment(i)), session_prefixed("/v1/models"),
    st.text(max_size=30).map(lambda t: "/" + s.path_segment(t))),
    s.query_strings, s.headers(json_body=False), st.sampled_from([b"", b"{}", b"\xff"]))
@example("GET", "/v1/models", "?limit=%C2%B2", [], b"")  # was a 500: "²".isdigit()
@example("GET", "/v1/models", "?limit=" + "9" * 5000, [], b"")  # was a 500: int() refuses
def test_any_method_on_any_path(live, method, path, query, headers, body):
    target = path + query if path != "*" else path
    exchange(live, "proxy", method, target, headers, body)


@settings(max_examples=examples(60), **SETTINGS)
@given(st.sampled_from(ROUTES))
def test_websocket_handshakes(live, path):
    """Any web page can open these (no CORS for WebSockets)."""
    exchange(live, "proxy", "GET", path if path != "*" else "/x", s.ws_upgrade(), b"")


def test_still_serves_after_the_fuzz(live):
    """Last in the module: whatever came before, a plain request is answered."""
    reply = exchange(live, "proxy", "POST", "/v1/messages",
                     [("Content-Type", "application/json")],
                     s.dump(dict(s.MESSAGES, stream=False)))
    assert reply.status == 200 and reply.json()["type"] == "message"
    assert live.breakers() == ["closed"]
