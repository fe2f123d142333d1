"""End to end through the Anthropic front: count_tokens, models, the root, session
routes, the max_tokens cap, what the log never holds, and the end of a stream."""

from __future__ import annotations

import logging

import httpx
import pytest
import trio

from tests.emulator import Reply, Text
from tests.support.anthropic_checks import check_stream
from tests.support.fixtures import body
from tests.support.messages_sdk import (
    BASH,
    MODEL,
    raw_stream,
    user,
)

# -- other endpoints -------------------------------------------------------------------------

async def test_count_tokens(client, http):
    raw = body("basic_json", 0)
    counted = await client.messages.count_tokens(
        model=raw["model"], messages=raw["messages"], system=raw["system"], tools=raw["tools"])
    assert 10_000 < counted.input_tokens < 25_000
    response = await http.post("/session/s1/v1/messages/count_tokens?beta=true", json={
        "model": "m", "messages": user("hello")})
    assert response.status_code == 200 and response.json()["input_tokens"] > 0


async def test_models_list(client, http):
    page = await client.models.list(limit=1000)
    ids = [m.id for m in page.data]
    assert ids[0].startswith("claude-") and MODEL in ids
    raw = (await http.get("/v1/models?limit=2")).json()
    assert set(raw) == {"object", "data", "has_more", "first_id", "last_id"} and raw["has_more"]
    assert raw["object"] == "list"


async def test_root_head_and_get(http):
    assert (await http.head("/")).status_code == 200
    assert (await http.get("/")).status_code == 200


async def test_session_routes_and_config(http, emulator):
    response = await http.put("/session/work-1/config", json={
        "model": "google/gemma-3-12b", "allowedTools": ["Read"]})
    assert response.status_code == 200
    assert response.json()["config"] == {"model": "google/gemma-3-12b",
                                         "allowedTools": ["Read"]}
    emulator.models["google/gemma-3-12b"].loaded = True
    read = {"name": "Read", "input_schema": {"type": "object"}}
    response = await http.post("/session/work-1/v1/messages", json={
        "model": "claude-sonnet-4-6", "max_tokens": 5, "messages": user("x"),
        "tools": [BASH, read]})
    assert response.status_code == 200, response.text
    sent = emulator.generations[-1].body
    assert sent["model"] == "google/gemma-3-12b"
    assert [t["name"] for t in sent["tools"]] == ["Read"]
    assert (await http.get("/session/work-1/v1/models")).status_code == 200


@pytest.mark.parametrize("sid", ["..", "a b", "x" * 200, "%2e%2e"])
async def test_bad_session_ids(http, sid):
    response = await http.put(f"/session/{sid}/config", json={"model": "x"})
    assert response.status_code in (400, 404)
    assert response.json()["type"] == "error"


async def test_bad_session_config(http):
    response = await http.put("/session/s/config", json={"allowedTools": "Bash"})
    assert response.status_code == 400
    assert "allowedTools" in response.json()["error"]["message"]


async def test_max_tokens_cap(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, max_tokens_cap="64")
    async with httpx.AsyncClient(base_url=server.url) as http:
        await http.post("/v1/messages", json={"model": "claude-x", "max_tokens": 32000,
                                              "messages": user("x")})
        await http.post("/v1/messages", json={"model": "claude-x", "max_tokens": 10,
                                              "messages": user("x")})
    assert [g.body["max_output_tokens"] for g in emulator.generations] == [64, 10]
    # a reply cut at the cap did not reach the client's limit: end_turn, not max_tokens
    emulator.script(Reply(Text("cut at the cap"), incomplete=True),
                    Reply(Text("cut at the client's own limit"), incomplete=True))
    async with httpx.AsyncClient(base_url=server.url) as http:
        capped = await http.post("/v1/messages", json={
            "model": "claude-x", "max_tokens": 32000, "messages": user("x")})
        own = await http.post("/v1/messages", json={
            "model": "claude-x", "max_tokens": 10, "messages": user("x")})
    assert capped.json()["stop_reason"] == "end_turn"
    assert own.json()["stop_reason"] == "max_tokens"


async def test_keys_and_auth_headers_never_reach_the_log(lmsd, emulator, caplog):
    caplog.set_level(logging.DEBUG, logger="lmsd")
    secret = "sk-ant-api03-VERY-SECRET-KEY"
    async with httpx.AsyncClient(base_url=lmsd.url) as http:
        await http.post("/v1/messages", headers={"x-api-key": secret,
                                                 "Authorization": f"Bearer {secret}"},
                        json={"model": "claude-x", "max_tokens": 5, "messages": user("x")})
    assert caplog.records and all(secret not in r.getMessage() and
                                  secret not in str(getattr(r, "lmsd_fields", ""))
                                  for r in caplog.records)


async def test_nothing_follows_message_stop_while_the_turn_is_stored(start_lmsd, emulator,
                                                                    monkeypatch):
    """Storing the finished turn can take longer than ping_interval (a slow disk, a busy
    machine): no ping may follow message_stop (seen once as a flaky test)."""
    server = await start_lmsd(emulator.url, ping_interval="0.05")
    slow_store = server.store.record_turn

    async def record_turn(*args, **kwargs):
        await trio.sleep(0.3)
        return await slow_store(*args, **kwargs)

    monkeypatch.setattr(server.store, "record_turn", record_turn)
    emulator.script(Reply(Text("stored slowly")))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        events = await raw_stream(http, {"model": "claude-x", "max_tokens": 10,
                                         "messages": user("hi")})
    assert check_stream(events, complete=True) == "complete"
    assert events[-1]["type"] == "message_stop"
