"""End to end through the Anthropic front: bad requests, overflow and upstream
failures as Claude Code sees them."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from tests.emulator import Fault, Reply, Text
from tests.support.anthropic_checks import check_stream
from tests.support.messages_sdk import (
    MODEL,
    raw_stream,
    user,
)

# -- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("payload", "status", "fragment"), [
    (b"{not json", 400, "not valid JSON"),
    (b"[]", 400, "expected a JSON object"),
    (json.dumps({"model": "m", "messages": user("x")}).encode(), 400,
     "max_tokens: field required"),
    (json.dumps({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "audio"}]}]}).encode(), 400, "messages.0.content.0.type"),
])
async def test_bad_requests(http, emulator, payload, status, fragment):
    response = await http.post("/v1/messages", content=payload,
                               headers={"content-type": "application/json"})
    assert response.status_code == status
    err = response.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert fragment in err["error"]["message"]
    assert emulator.generations == []


async def test_body_over_the_limit(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, max_body_bytes="1000")
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/v1/messages", json={
            "model": "m", "max_tokens": 5, "messages": user("x" * 5000)})
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"


async def test_unknown_path_is_an_anthropic_404(http):
    response = await http.get("/v2/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


@pytest.mark.parametrize("mode", ["http400", "http500", "stream_error"])
async def test_context_overflow_is_prompt_too_long(client, emulator, mode):
    """Over the context, but not so far over that lmsd refuses it before sending (see
    test_overflow.py): the engine's own overflow is what comes back."""
    emulator.overflow_mode = mode
    emulator.models[MODEL].context_length = 160
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(model="claude-x", max_tokens=10,
                                     messages=user("abc " * 200))
    assert info.value.status_code == 400
    assert info.value.body["error"]["message"].startswith("prompt is too long: ")
    assert "> 160 maximum" in info.value.body["error"]["message"]
    assert len(emulator.generations) == 1


async def test_context_overflow_in_a_stream_is_an_error_event(http, emulator):
    emulator.models[MODEL].context_length = 160
    events = await raw_stream(http, {"model": "claude-x", "max_tokens": 10,
                                     "messages": user("abc " * 200)})
    assert check_stream(events) == "error"
    assert events[-1]["error"]["type"] == "invalid_request_error"
    assert events[-1]["error"]["message"].startswith("prompt is too long: ")
    assert len(emulator.generations) == 1


@pytest.mark.parametrize(("fault", "status", "fragment"), [
    (Fault.http(500, "engine exploded"), 502, "engine exploded"),
    (Fault.error_event(after_events=3, message="bad things", code="server_error"), 502,
     "bad things"),
    (Fault.failed(message="generation failed", code="server_error"), 502,
     "generation failed"),
    (Fault.drop(after_events=4), 502, ""),
])
async def test_upstream_failures_non_streaming(client, emulator, fault, status, fragment):
    emulator.inject(fault)
    with pytest.raises(anthropic.APIStatusError) as info:
        await client.messages.create(model="claude-x", max_tokens=10, messages=user("x"))
    assert info.value.status_code == status
    assert info.value.body["error"]["type"] == "api_error"
    assert fragment in info.value.body["error"]["message"]


@pytest.mark.parametrize("fault", [
    Fault.http(500, "engine exploded"),
    Fault.error_event(after_events=6, message="bad things", code="server_error"),
    Fault.failed(message="generation failed", code="server_error"),
    Fault.drop(after_events=6),
])
async def test_upstream_failures_mid_stream_are_error_events(http, emulator, fault):
    emulator.inject(fault)
    emulator.script(Reply(Text("some text that starts streaming")))
    events = await raw_stream(http, {"model": "claude-x", "max_tokens": 10,
                                     "messages": user("x")})
    assert check_stream(events) == "error"
    assert events[-1]["error"]["type"] == "api_error"


async def test_upstream_unreachable(start_lmsd):
    server = await start_lmsd("http://127.0.0.1:9", model="some-model")
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/v1/messages", json={
            "model": "claude-x", "max_tokens": 5, "messages": user("x")})
        assert response.status_code == 503
        assert "not reachable at http://127.0.0.1:9" in response.json()["error"]["message"]
        events = await raw_stream(http, {"model": "claude-x", "max_tokens": 5,
                                         "messages": user("x")})
    assert check_stream(events) == "error"
    assert "not reachable" in events[-1]["error"]["message"]


async def test_no_model_loaded(start_lmsd, emulator):
    emulator.models[MODEL].loaded = False
    server = await start_lmsd(emulator.url)
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/v1/messages", json={
            "model": "claude-x", "max_tokens": 5, "messages": user("x")})
    assert response.status_code == 503
    assert "no model loaded" in response.json()["error"]["message"]


async def test_model_not_found_upstream(client, emulator):
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.create(model="no/such-model", max_tokens=5, messages=user("x"))
