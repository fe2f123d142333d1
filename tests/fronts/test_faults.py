"""Faults: what the client sees, what the upstream saw, and that lmsd serves afterwards."""

from __future__ import annotations

import socket

import anthropic
import httpx
import pytest
import trio

from tests.emulator import Emulator, Fault, Reply, Text, serve_emulator
from tests.support.anthropic_checks import check_stream, parse_sse

PAYLOAD = {"model": "claude-x", "max_tokens": 50, "messages": [{"role": "user",
                                                                 "content": "hi"}]}


async def still_serves(server, emulator) -> None:
    emulator.script(Reply(Text("still here")))
    # a new request: the one the engine just refused would be answered from that refusal
    later = {**PAYLOAD, "messages": [{"role": "user", "content": "hi again"}]}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        response = await http.post("/v1/messages", json=later)
    assert response.status_code == 200
    assert response.json()["content"][0]["text"] == "still here"


async def sse(server, payload=PAYLOAD):
    async with httpx.AsyncClient(base_url=server.url, timeout=300) as http:
        response = await http.post("/v1/messages", json={**payload, "stream": True})
    assert response.status_code == 200
    return parse_sse(response.content)


async def test_an_upstream_that_never_answers_times_out_clearly(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, upstream_timeout="1", ping_interval="0.2")
    emulator.inject(Fault.hang(), Fault.hang())
    events = await sse(server)
    assert check_stream(events) == "error"
    assert "did not answer within 1 s" in events[-1]["error"]["message"]
    assert "ping" in [e["type"] for e in events]
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        response = await http.post("/v1/messages", json=PAYLOAD)
    assert response.status_code == 504
    assert "did not answer within 1 s" in response.json()["error"]["message"]
    await still_serves(server, emulator)


async def test_a_60_second_first_byte_is_kept_alive_with_pings(start_lmsd, emulator,
                                                               autojump_clock):
    """Emulated time: trio's autojump clock skips the idle minute."""
    server = await start_lmsd(emulator.url)  # ping_interval 10 s, the default
    emulator.inject(Fault.slow_first_byte(60))
    emulator.script(Reply(Text("after a long prefill")))
    events = await sse(server)
    check_stream(events, complete=True)
    kinds = [e["type"] for e in events]
    assert kinds.index("content_block_start") > kinds.index("message_start")
    assert kinds[:kinds.index("content_block_start")].count("ping") >= 5


@pytest.mark.parametrize("phase", ["prefill", "generation"])
async def test_a_client_disconnect_cancels_the_upstream_within_a_second(lmsd, emulator,
                                                                          phase):
    if phase == "prefill":
        emulator.inject(Fault.slow_first_byte(30))
    else:
        emulator.token_delay = 0.05
        emulator.script(Reply(Text("token " * 2000)))
    async with (
        httpx.AsyncClient(base_url=lmsd.url) as http,
        http.stream("POST", "/v1/messages", json={**PAYLOAD, "stream": True}) as response,
    ):
        async for chunk in response.aiter_raw():
            if b"message_start" in chunk if phase == "prefill" else b"text_delta" in chunk:
                break
        with trio.fail_after(10):
            while not emulator.generations:
                await trio.sleep(0.01)
    [record] = emulator.generations
    with trio.fail_after(1):  # the upstream request is cancelled promptly
        await record.done.wait()
    assert record.outcome == "cancelled"
    await still_serves(lmsd, emulator)


@pytest.mark.parametrize(("status", "expected_status", "expected_type"), [
    (400, 400, "invalid_request_error"), (404, 404, "not_found_error"),
    (500, 502, "api_error"), (503, 529, "overloaded_error")])
async def test_upstream_http_errors(lmsd, emulator, status, expected_status, expected_type):
    emulator.inject(Fault.http(status, "upstream said no"))
    events = await sse(lmsd)
    assert check_stream(events) == "error"
    assert events[-1]["error"]["type"] == expected_type
    # The same request again, not streamed (Claude Code's resend): a refusal (4xx) is
    # answered from the engine's answer moments ago (protocol/clients/resends.py), the rest sent.
    remembered = status == 400  # (a 404 here is not the engine naming a missing model)
    if not remembered:
        emulator.inject(Fault.http(status, "upstream said no"))
    async with anthropic.AsyncAnthropic(base_url=lmsd.url, api_key="x",
                                        max_retries=0) as client:
        with pytest.raises(anthropic.APIStatusError) as info:
            await client.messages.create(**PAYLOAD)
    assert info.value.status_code == expected_status
    assert "upstream said no" in info.value.body["error"]["message"]
    assert len(emulator.generations) == (1 if remembered else 2)
    await still_serves(lmsd, emulator)


async def test_the_upstream_down_at_request_time_then_back(start_lmsd, nursery):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = await start_lmsd(f"http://127.0.0.1:{port}", model="qwen/qwen3-coder-30b")
    async with httpx.AsyncClient(base_url=server.url) as http:
        down = await http.post("/v1/messages", json=PAYLOAD)
    assert down.status_code == 503
    assert f"not reachable at http://127.0.0.1:{port}" in down.json()["error"]["message"]
    emulator = Emulator()
    await serve_emulator(nursery, emulator, port=port)
    await still_serves(server, emulator)


@pytest.mark.parametrize("lms", ["missing", "hanging"])
async def test_lmsd_starts_without_a_working_lms(start_lmsd, tmp_path, monkeypatch, lms):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if lms == "hanging":
        fake = bin_dir / "lms"
        fake.write_text("#!/bin/sh\nsleep 600\n")
        fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("LMSTUDIO_HOME", str(tmp_path / "no-lmstudio"))
    monkeypatch.setattr("lmsd.upstreams.discovery.DEFAULT_PORT", 9)  # nothing listens there
    server = await start_lmsd("auto")
    async with httpx.AsyncClient(base_url=server.admin_url) as http:
        status = (await http.get("/status")).json()
        ready = await http.get("/readyz")
    assert status["upstream"]["source"] == "default"
    assert ready.status_code == 503


@pytest.mark.parametrize(("after_events", "text_before"), [(1, False), (8, True)])
async def test_the_upstream_drops_before_and_after_the_first_token(lmsd, emulator,
                                                                  after_events, text_before):
    emulator.inject(Fault.drop(after_events=after_events))
    emulator.script(Reply(Text("some words that start streaming")))
    events = await sse(lmsd)
    assert check_stream(events) == "error"
    assert any(e["type"] == "content_block_delta" for e in events) is text_before
    assert events[-1]["error"]["type"] == "api_error"
    [record] = emulator.generations
    assert record.outcome == "dropped"
    await still_serves(lmsd, emulator)
