"""A failure the client's request causes is never an upstream-health event (issue 22, 3):
with two emulated upstreams, requests carrying a bad session id (or a header value that
cannot be sent) take no upstream out of rotation and move to no other upstream; the next
client is served as if nothing happened."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio

from lmsd.upstreams import routed
from tests.support.boxes import Box, boxes
from tests.support.daemon import MODEL
from tests.upstreams.test_several import start_pair, upstreams_of

#: Ids that a ``$``-anchored check let through, or that no HTTP header may carry.
BAD_IDS = ["abc\n", "abc\r\n", "a\x00b", "é", "a" * 129, "abc\r", "abc\t", "a b", "-abc",
           "abc\x1b[2J", "abc\u202e"]


@pytest.fixture
async def pair(nursery: trio.Nursery) -> list[Box]:
    return await boxes(nursery, "a", "b")


def _messages(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 32, "stream": False,
            "messages": [{"role": "user", "content": "hi"}], **extra}


def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **extra}


def _responses(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "input": "hi", "stream": False, **extra}


def _derived(bad: str) -> list[tuple[str, dict[str, Any]]]:
    """Every place lmsd derives a session from optional metadata, carrying ``bad``."""
    return [
        ("/v1/messages", _messages(metadata={"user_id": json.dumps({"session_id": bad})})),
        ("/v1/messages", _messages(metadata={"user_id": f"user_x_account__session_{bad}"})),
        ("/v1/chat/completions", _chat(prompt_cache_key=bad)),
        ("/v1/chat/completions", _chat(user=bad)),
        ("/v1/responses", _responses(prompt_cache_key=bad)),
    ]


def _header_safe(bad: str) -> bytes | None:
    """``bad`` as raw header bytes, when HTTP lets a client send it at all."""
    try:
        raw = bad.encode("latin-1")
    except UnicodeEncodeError:
        return None
    sendable = raw == raw.strip() and not any(c in raw for c in b"\r\n\x00")
    return raw if sendable else None


HEADER_SOURCES = [("/v1/messages", "x-claude-code-session-id", _messages()),
                  ("/v1/messages", "x-claude-code-agent-id", _messages()),
                  ("/v1/chat/completions", "x-session-id", _chat()),
                  ("/v1/responses", "session-id", _responses()),
                  ("/v1/responses", "session_id", _responses())]


def _sent_headers_are_legal(pair: list[Box]) -> None:
    for box in pair:
        for record in box.generations():
            for name in ("x-session-id", "x-user-id", "x-smg-routing-key",
                         "x-dynamo-session-id"):
                value = record.headers.get(name, "")
                assert value.isascii() and value.isprintable(), (name, value)


async def _assert_healthy(server: Any) -> None:
    listed = await upstreams_of(server)
    for name in ("a", "b"):
        health = listed[name]["health"]
        assert (health["state"], health["trips"], health["consecutive_failures"]) == \
            ("closed", 0, 0), (name, health)


async def test_bad_session_ids_from_every_source_never_reach_upstream_health(
        start_lmsd, pair):
    server = await start_pair(start_lmsd, pair, poll_interval="60")
    sent = 0
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for bad in BAD_IDS:
            for path, body in _derived(bad):  # optional metadata: ignored, default session
                answer = await http.post(path, json=body)
                sent += 1
                assert answer.status_code == 200, (path, bad, answer.text)
            raw = _header_safe(bad)
            for path, header, body in HEADER_SOURCES if raw is not None else ():
                answer = await http.post(path, json=body, headers={header: raw})
                sent += 1
                assert answer.status_code == 200, (path, header, bad, answer.text)
            # An explicit id (the path) is a 400 that names the problem.
            answer = await http.post(f"/session/{quote(bad, safe='')}/v1/messages",
                                     json=_messages())
            assert answer.status_code == 400, (bad, answer.text)
            assert "session id" in answer.json()["error"]["message"]
        _sent_headers_are_legal(pair)
        assert sent >= 20
        await _assert_healthy(server)
        # Another client, with a good id, is served; both upstreams still take sessions.
        for n in range(4):
            answer = await http.post("/v1/messages", json=_messages(),
                                     headers={"x-claude-code-session-id": f"good-{n}"})
            assert answer.status_code == 200, answer.text
    await _assert_healthy(server)
    assert all(any(r.headers.get("x-session-id", "").startswith("good-")
                   for r in box.generations()) for box in pair)
    assert not {key[0] for key in server.store.stats} & set(BAD_IDS)


async def test_admin_session_routes_refuse_bad_ids(start_lmsd, pair):
    server = await start_pair(start_lmsd, pair, poll_interval="60")
    async with httpx.AsyncClient(base_url=server.admin_url) as http:
        for bad in ("abc%0A", "abc%0D%0A", "a%00b", "%C3%A9", "a" * 129):
            for method, suffix in (("GET", ""), ("DELETE", ""), ("PUT", "/config"),
                                   ("PUT", "/record")):
                answer = await http.request(method, f"/sessions/{bad}{suffix}",
                                            json={"model": None})
                assert answer.status_code == 400, (method, bad, suffix, answer.text)
                assert "session id" in answer.json()["error"]["message"]


async def test_a_header_value_that_cannot_be_sent_is_a_400_not_an_upstream_failure(
        start_lmsd, pair, monkeypatch):
    """Whatever lets a bad value reach a header (here: the id check bypassed), httpx's
    refusal is the request's fault: a 400 naming it, no failover, no breaker counted."""
    bind = routed.Routed.bind

    async def bad_header(self: Any, conv: Any) -> Any:
        binding = await bind(self, conv)
        if self.session.startswith("evil"):
            binding.headers = {**binding.headers, "x-session-id": self.session + "\n"}
        return binding

    monkeypatch.setattr(routed.Routed, "bind", bad_header)
    server = await start_pair(start_lmsd, pair, poll_interval="60")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for n in range(24):
            answer = await http.post("/v1/messages", json=_messages(),
                                     headers={"x-claude-code-session-id": f"evil-{n}"})
            assert answer.status_code == 400, answer.text
            error = answer.json()["error"]
            assert error["type"] == "invalid_request_error"
            assert "could not be sent upstream" in error["message"]
            assert "LocalProtocolError" in error["message"]
        await _assert_healthy(server)
        assert not any(b.generations() for b in pair)  # nothing reached an engine
        answer = await http.post("/v1/messages", json=_messages(),
                                 headers={"x-claude-code-session-id": "good"})
        assert answer.status_code == 200, answer.text
    await _assert_healthy(server)
