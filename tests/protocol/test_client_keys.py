"""Client keys, pure (issue 22): which client sent a request, and its sessions' namespace."""

from __future__ import annotations

import pytest

from lmsd.protocol.client_keys import (
    client_of,
    identify,
    match,
    parse_key_lines,
    parse_pairs,
    presented_keys,
    scoped,
)
from lmsd.protocol.failures import Unauthorized
from lmsd.sessions.config import SESSION_ID, STORED_SESSION_ID

A, B = "a" * 20, "b" * 20
KEYS = {"laptop": A, "ci": B}


def test_keys_come_as_x_api_key_or_bearer():
    assert presented_keys({"x-api-key": A}) == [A]
    assert presented_keys({"Authorization": f"Bearer {B}"}) == [B]
    assert presented_keys({"Authorization": f"bearer  {B} "}) == [B]
    assert presented_keys({"Authorization": f"Basic {B}"}) == []
    assert presented_keys({"x-api-key": "sk-ant-x", "Authorization": f"Bearer {A}"}) == [
        "sk-ant-x", A]


def test_match_names_the_client_of_any_presented_key():
    assert match(KEYS, [A]) == "laptop"
    assert match(KEYS, ["sk-ant-real-anthropic-key", B]) == "ci"
    assert match(KEYS, [A[:-1]]) is None and match(KEYS, [A + "x"]) is None
    assert match(KEYS, []) is None and match({}, [A]) is None


def test_required_keys_refuse_and_say_why_without_the_key():
    assert identify(KEYS, {"x-api-key": A}, required=True) == "laptop"
    with pytest.raises(Unauthorized, match=r"^no client key sent"):
        identify(KEYS, {}, required=True)
    with pytest.raises(Unauthorized, match=r"^client key not recognised") as caught:
        identify(KEYS, {"Authorization": "Bearer not-a-key-of-ours"}, required=True)
    assert "not-a-key-of-ours" not in caught.value.message


def test_on_loopback_a_request_without_a_known_key_is_anonymous():
    assert identify(KEYS, {}, required=False) is None
    assert identify(KEYS, {"x-api-key": "sk-ant-whatever"}, required=False) is None
    assert identify(KEYS, {"x-api-key": B}, required=False) == "ci"
    assert identify({}, {"x-api-key": B}, required=False) is None


def test_sessions_are_namespaced_by_a_separator_no_session_id_contains():
    assert scoped("laptop", "s1") == "laptop~s1" and scoped(None, "s1") == "s1"
    assert client_of("laptop~s1") == "laptop" and client_of("s1") is None
    assert not SESSION_ID.match("laptop~s1")  # a client cannot name another's session
    assert STORED_SESSION_ID.fullmatch("laptop~s1") and STORED_SESSION_ID.fullmatch("s1")
    assert not STORED_SESSION_ID.fullmatch("a~b~c") and not STORED_SESSION_ID.fullmatch("~s1")


def test_parsing_names_the_problem_never_the_key():
    assert parse_pairs([("laptop", A), (" ci ", f" {B} ")]) == KEYS
    assert parse_key_lines(f"# keys\n\nlaptop={A}\nci = \"{B}\"\n") == [("laptop", A),
                                                                         ("ci", B)]
    for pairs, problem in [([("lap top", A)], "client name 'lap top'"),
                           ([("laptop", "short")], "shorter than 16"),
                           ([("laptop", A), ("laptop", B)], "two keys are named 'laptop'"),
                           ([("laptop", A), ("ci", A)], "'ci' has the same key"),
                           ([("laptop", A + " x")], "a space")]:
        with pytest.raises(ValueError, match=problem) as caught:
            parse_pairs(pairs)
        assert A not in str(caught.value)
    with pytest.raises(ValueError, match="line 2: expected NAME=KEY"):
        parse_key_lines(f"laptop={A}\n{B}\n")
