"""The watcher in a running lmsd: it raises a small loaded context, backs off, and requests wait
for a reload."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest
import trio

from tests.emulator import Emulator, serve_emulator
from tests.support.daemon import MODEL, admin_get, next_event, polls


async def test_model_at_4096_is_raised_within_one_poll(start_lmsd, emulator):
    emulator.models[MODEL].context_length = 4096
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.2")
    with server.bus.subscribe(types=("model",), replay=500) as sub:
        enforced = await next_event(sub, "model.context_enforced")
    assert (enforced["old"], enforced["new"], enforced["via"]) == (4096, 32768, "rest")
    assert emulator.models[MODEL].context_length == 32768
    status = (await admin_get(server, "/status")).json()
    [model] = status["models"]
    assert model["context_length"] == 32768 and model["key"] == MODEL
    loads = [r for r in emulator.log if r.path == "/api/v1/models/load"]
    assert loads[-1].body == {"model": MODEL, "context_length": 32768}


async def test_large_context_is_left_alone_and_never_shrunk(start_lmsd, emulator):
    emulator.models[MODEL].context_length = 65536
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.05")
    await polls(server, 3)
    assert not [r for r in emulator.log if r.path.startswith("/api/v1/models/")
                and r.method == "POST"]
    assert emulator.models[MODEL].context_length == 65536


async def test_cap_below_the_minimum_raises_to_the_cap_and_warns(start_lmsd, emulator):
    emulator.models[MODEL].context_length = 4096
    emulator.models[MODEL].max_context_length = 16384
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.2")
    with server.bus.subscribe(types=("model",), replay=500) as sub:
        capped = await next_event(sub, "model.context_capped")
        enforced = await next_event(sub, "model.context_enforced")
    assert capped["max_context_length"] == 16384 and enforced["new"] == 16384


async def test_failed_reload_is_reported_and_backed_off(start_lmsd, emulator):
    emulator.models[MODEL].context_length = 4096
    emulator.fail_loads = 1
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.05")
    with server.bus.subscribe(types=("model",), replay=500) as sub:
        failed = await next_event(sub, "model.reload_failed")
        restored = await next_event(sub, "model.restored")
    assert "not enough memory" in failed["error"]
    assert restored["context_length"] == 4096 and emulator.models[MODEL].loaded
    await polls(server, 5)
    loads = [r for r in emulator.log if r.path == "/api/v1/models/load"]
    assert len(loads) == 2  # the failed load and the restore; no retry while backing off
    assert MODEL in server.router.backends[0].watcher.to_json()["backing_off"]


async def test_a_user_reverting_the_context_is_not_fought(start_lmsd, emulator):
    emulator.models[MODEL].context_length = 4096
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.05")
    with server.bus.subscribe(types=("model",), replay=500) as sub:
        await next_event(sub, "model.context_enforced")
        emulator.models[MODEL].context_length = 4096  # the user reloads it by hand
        reverted = await next_event(sub, "model.context_reverted")
    assert reverted["context_length"] == 4096
    await polls(server, 5)
    assert emulator.models[MODEL].context_length == 4096
    assert len([r for r in emulator.log if r.path == "/api/v1/models/load"]) == 1


async def test_no_watch_reports_models_but_enforces_nothing(start_lmsd, emulator):
    emulator.models[MODEL].context_length = 4096
    server = await start_lmsd(emulator.url, watch="false", poll_interval="0.05")
    await polls(server, 3)
    status = (await admin_get(server, "/status")).json()
    assert status["models"][0]["context_length"] == 4096
    assert status["watcher"]["enforcing"] is False
    assert emulator.models[MODEL].context_length == 4096


async def test_a_request_during_the_reload_waits_with_pings_and_completes(start_lmsd,
                                                                            emulator):
    emulator.models[MODEL].context_length = 4096
    emulator.load_delay = 1.0
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.1",
                              ping_interval="0.1")
    with trio.fail_after(10):
        while not server.router.backends[0].watcher.reloading(MODEL):
            await trio.sleep(0.01)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        response = await http.post("/v1/messages", json={
            "model": "claude-sonnet-4-6", "max_tokens": 10, "stream": True,
            "messages": [{"role": "user", "content": "hello during reload"}]})
    frames = [f for f in response.text.split("\n\n") if f.strip()]
    kinds = [f.split("\n")[0].removeprefix("event: ") for f in frames]
    assert kinds[0] == "message_start" and "ping" in kinds and kinds[-1] == "message_stop"
    [generation] = emulator.generations
    assert emulator.models[MODEL].context_length == 32768
    assert generation.body["model"] == MODEL


async def test_a_failed_reload_fails_waiting_requests_clearly(start_lmsd, emulator):
    emulator.models[MODEL].context_length = 4096
    emulator.load_delay = 0.5
    emulator.fail_loads = 1
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.1")
    with trio.fail_after(10):
        while not server.router.backends[0].watcher.reloading(MODEL):
            await trio.sleep(0.01)
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="x",
                                        max_retries=0) as client:
        with pytest.raises(anthropic.APIStatusError) as info:
            await client.messages.create(model="claude-x", max_tokens=5,
                                         messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 503
    assert "could not reload" in info.value.body["error"]["message"]


async def test_lmstudio_down_at_start_then_coming_up(start_lmsd, nursery, tmp_path,
                                                     monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tmp_path / "lmstudio"
    (home / ".internal").mkdir(parents=True)
    (home / ".internal" / "http-server-config.json").write_text(json.dumps({"port": port}))
    monkeypatch.setenv("LMSTUDIO_HOME", str(home))
    monkeypatch.setenv("PATH", str(tmp_path))  # no `lms` here
    server = await start_lmsd("auto", watch="true", poll_interval="0.1", model=MODEL)
    ready = await admin_get(server, "/readyz")
    assert ready.status_code == 503 and "not reachable" in ready.json()["error"]
    async with httpx.AsyncClient(base_url=server.url) as http:
        down = await http.post("/v1/messages", json={
            "model": "claude-x", "max_tokens": 5, "messages": [{"role": "user",
                                                                 "content": "x"}]})
    assert down.status_code == 503 and "not reachable" in down.json()["error"]["message"]
    emu = Emulator()
    with server.bus.subscribe(types=("upstream",), replay=500) as sub:
        await serve_emulator(nursery, emu, port=port)
        up = await next_event(sub, "upstream.up")
    assert up["url"] == f"http://127.0.0.1:{port}"
    assert (await admin_get(server, "/readyz")).status_code == 200
    async with httpx.AsyncClient(base_url=server.url) as http:
        ok = await http.post("/v1/messages", json={
            "model": "claude-x", "max_tokens": 5, "messages": [{"role": "user",
                                                                 "content": "x"}]})
    assert ok.status_code == 200
    status = (await admin_get(server, "/status")).json()
    assert status["upstream"]["source"] == "http-server-config.json"
