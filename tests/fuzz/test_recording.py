"""The fronts' fuzzers again while a session records: the recorder reads every POST first
(while any session records), so the same requests must get the same clean answers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.fuzz import strategies as s
from tests.fuzz.check import examples, exchange
from tests.fuzz.live import Live, live_lmsd

pytestmark = [pytest.mark.fuzz]
SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_lmsd(tmp_path_factory.mktemp("fuzz-rec"), record_sessions="fuzz-rec") as server:
        server.catch.take()
        yield server


@settings(max_examples=examples(200), **SETTINGS)
@given(st.sampled_from(["/v1/messages", "/v1/chat/completions", "/v1/responses",
                        "/session/fuzz-rec/v1/messages"]),
       s.headers(), st.one_of(s.body_for(s.MESSAGES), s.body_for(s.CHAT),
                              s.body_for(s.RESPONSES)))
@example("/v1/messages", [("Content-Type", "application/json")], b'{"messages":[' * 3000)
def test_fronts_while_recording(live, path, headers, body):
    exchange(live, "proxy", "POST", path, headers, body)
