"""Session ids are checked by full match (issue 22, 3): with ``$``, ``"abc\\n"`` passed,
and went upstream as an illegal header."""

from __future__ import annotations

import json

import pytest

from lmsd.protocol.failures import BadRequest
from lmsd.sessions.config import agent_id_of, check_session_id, is_session_id, session_id_of

BAD = ["abc\n", "abc\r\n", "abc\r", "a\x00b", "é", "a" * 129, "", " abc", "abc ", "-abc",
       "abc\x1b[2J", "abc\u202e", "abc\u2028", "ab/c", "\nabc"]
GOOD = ["abc", "a" * 128, "sess-1", "a.b_c:d-e", "0"]


@pytest.mark.parametrize("bad", BAD)
def test_a_bad_id_is_refused_by_name_where_it_is_explicit(bad):
    assert not is_session_id(bad)
    with pytest.raises(BadRequest, match="session id: use 1-128 letters"):
        check_session_id(bad)


@pytest.mark.parametrize("bad", BAD)
def test_a_bad_id_in_optional_metadata_falls_back(bad):
    """Claude Code's header, ``metadata.user_id`` (JSON and ``_session_`` forms) and the
    agent header: a bad id there is ignored, as a missing one is."""
    assert session_id_of({"x-claude-code-session-id": bad}, None, None) == "default"
    as_json = {"user_id": json.dumps({"session_id": bad})}
    assert session_id_of({}, as_json, "from-path") == "from-path"
    assert session_id_of({}, {"user_id": f"user_x_account__session_{bad}"}, None) == "default"
    assert agent_id_of({"x-claude-code-agent-id": bad}) == "main"


@pytest.mark.parametrize("good", GOOD)
def test_good_ids_pass_everywhere(good):
    assert check_session_id(good) == good
    assert session_id_of({"x-claude-code-session-id": good}, None, None) == good
    assert session_id_of({}, {"user_id": json.dumps({"session_id": good})}, None) == good
    assert agent_id_of({"x-claude-code-agent-id": good}) == good


def test_non_strings_are_not_ids():
    assert not any(is_session_id(v) for v in (None, 1, ["abc"], b"abc"))
    assert session_id_of({}, {"user_id": json.dumps({"session_id": 5})}, None) == "default"
