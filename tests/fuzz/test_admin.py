"""Hostile requests to every route of the admin API: never a 5xx, never a traceback."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.fuzz import strategies as s
from tests.fuzz.check import examples, exchange

pytestmark = pytest.mark.fuzz
SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck))

FIXED = [("GET", "/status"), ("GET", "/upstreams"), ("GET", "/sessions"),
         ("DELETE", "/sessions"), ("GET", "/recordings"), ("GET", "/metrics"),
         ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/"), ("GET", "/events"),
         ("GET", "/nope"), ("POST", "/status"), ("PUT", "/sessions")]
PER_SESSION = [("GET", "/sessions/{}"), ("DELETE", "/sessions/{}"),
               ("PUT", "/sessions/{}/config"), ("PUT", "/sessions/{}/record"),
               ("DELETE", "/sessions/{}/record"), ("GET", "/sessions/{}/config"),
               ("POST", "/sessions/{}"), ("GET", "/sessions/{}/nope")]


@st.composite
def admin_requests(draw):
    if draw(st.booleans()):
        method, path = draw(st.sampled_from(FIXED))
    else:
        method, template = draw(st.sampled_from(PER_SESSION))
        path = template.format(s.path_segment(draw(s.odd_ids)))
    if draw(st.integers(0, 4)) == 0:
        method = draw(s.methods)
    body = draw(s.body_for(s.CONFIG)) if method in ("PUT", "POST", "PATCH") else b""
    return method, path + draw(s.query_strings), draw(s.headers()), body


@settings(max_examples=examples(500), **SETTINGS)
@given(admin_requests())
def test_admin_api(live, case):
    method, target, headers, body = case
    exchange(live, "admin", method, target, headers, body)


@settings(max_examples=examples(150), **SETTINGS)
@given(st.sampled_from(["/events", "/events", "/events", "/nope", "/", "/status"]),
       s.query_strings)
@example("/events", "?replay=%C2%B2")  # was a traceback: "²" is a digit to str.isdigit
@example("/events", "?replay=" + "9" * 5000)
def test_admin_websocket_handshakes(live, path, query):
    """The event tail's handshake, with any query (``?replay=``, ``?session=``, ``?type=``),
    and handshakes to paths that are not WebSockets."""
    exchange(live, "admin", "GET", path + query, s.ws_upgrade(), b"")
