"""Per-session configuration (``PUT /session/{id}/config``) and where a session id comes
from: values in, the config or a 400 naming the field out."""

from __future__ import annotations

import json

import pytest

from lmsd.protocol.failures import BadRequest
from lmsd.sessions.config import (
    SessionConfig,
    check_stored_session_id,
    parse_session_config,
    session_id_of,
)


def test_a_full_config_parses_and_round_trips_through_json():
    config = parse_session_config({"model": "qwen/qwen3-coder-30b",
                                   "allowedTools": ["Read", "Bash", "Read"]})
    assert config == SessionConfig("qwen/qwen3-coder-30b", frozenset({"Bash", "Read"}))
    assert config.to_json() == {"model": "qwen/qwen3-coder-30b",
                                "allowedTools": ["Bash", "Read"]}  # sorted, once each
    assert parse_session_config(config.to_json()) == config


def test_nulls_and_omissions_mean_no_override():
    for body in ({}, {"model": None}, {"allowedTools": None}):
        assert parse_session_config(body) == SessionConfig()
    assert SessionConfig().to_json() == {"model": None, "allowedTools": None}
    # an empty allow-list is a list (no tool allowed), not "no list"
    empty = parse_session_config({"allowedTools": []})
    assert empty.allowed_tools == frozenset()
    assert empty.to_json()["allowedTools"] == []


@pytest.mark.parametrize(("body", "says"), [
    ([], "session config: expected a JSON object"),
    ("model", "session config: expected a JSON object"),
    ({"model": "m", "tools": []}, "session config: unknown field 'tools'"),
    ({"b": 1, "a": 2}, "session config: unknown field 'a'"),  # the first, sorted
    ({"model": ""}, "model: expected a non-empty string or null"),
    ({"model": "   "}, "model: expected a non-empty string or null"),
    ({"model": 5}, "model: expected a non-empty string or null"),
    ({"model": "qwen\x1b[2J"}, "model: control character '\\x1b' at 4 is not allowed"),
    ({"allowedTools": "Bash"}, "allowedTools: expected an array of tool names or null"),
    ({"allowedTools": ["Bash", ""]}, "allowedTools: expected an array of tool names"),
    ({"allowedTools": ["Bash", 3]}, "allowedTools: expected an array of tool names"),
    ({"allowedTools": ["Bash", "Re\nad"]},
     "allowedTools.1: control character '\\n' at 2 is not allowed"),
])
def test_a_bad_config_is_a_400_naming_the_field(body, says):
    with pytest.raises(BadRequest) as refused:
        parse_session_config(body)
    assert refused.value.message.startswith(says), refused.value.message


@pytest.mark.parametrize("sid", ["abc", "laptop~abc", "a-b_c~s.1:2", "x" * 32 + "~abc"])
def test_a_stored_session_id_may_name_its_client(sid):
    assert check_stored_session_id(sid) == sid


@pytest.mark.parametrize("sid", ["", "~abc", "laptop~", "a.b~abc", "x" * 33 + "~abc",
                                 "a~b~c", "abc\n", "-abc"])
def test_a_bad_stored_session_id_is_refused(sid):
    with pytest.raises(BadRequest, match="after CLIENT~ for a keyed client's session"):
        check_stored_session_id(sid)


def test_the_session_id_comes_from_the_header_then_the_metadata_then_the_path():
    header = {"x-claude-code-session-id": "from-header"}
    as_json = {"user_id": json.dumps({"session_id": "from-json", "device_id": "d"})}
    legacy = {"user_id": "user_abc_account_def_session_from-legacy"}
    assert session_id_of(header, as_json, "from-path") == "from-header"
    assert session_id_of({}, as_json, "from-path") == "from-json"
    assert session_id_of({}, legacy, "from-path") == "from-legacy"
    assert session_id_of({}, {"user_id": "no session here"}, "from-path") == "from-path"
    assert session_id_of({}, {"user_id": "{not json"}, None) == "default"
    assert session_id_of({}, {"user_id": "[1]"}, None) == "default"  # JSON, not an object
    assert session_id_of({}, None, None) == "default"
