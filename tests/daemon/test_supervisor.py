"""The daemon in-process: watcher, admin API, event tail, supervision, security."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest
import trio
import trio_websocket

from lmsd.bus import EventBus
from lmsd.config import ConfigError, load_settings
from lmsd.daemon.supervisor import serve
from tests.emulator import Emulator, Reply, Text, serve_emulator
from tests.support.conversation import Conversation, tool_turns
from tests.support.daemon import MODEL, admin_get, next_event, polls

# -- the watcher -------------------------------------------------------------------------------

async def test_model_at_4096_is_raised_within_one_poll(start_lmsd, emulator):
    emulator.models[MODEL].context_length = 4096
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.2")
    with server.daemon.bus.subscribe(types=("model",), replay=500) as sub:
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
    with server.daemon.bus.subscribe(types=("model",), replay=500) as sub:
        capped = await next_event(sub, "model.context_capped")
        enforced = await next_event(sub, "model.context_enforced")
    assert capped["max_context_length"] == 16384 and enforced["new"] == 16384


async def test_failed_reload_is_reported_and_backed_off(start_lmsd, emulator):
    emulator.models[MODEL].context_length = 4096
    emulator.fail_loads = 1
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.05")
    with server.daemon.bus.subscribe(types=("model",), replay=500) as sub:
        failed = await next_event(sub, "model.reload_failed")
        restored = await next_event(sub, "model.restored")
    assert "not enough memory" in failed["error"]
    assert restored["context_length"] == 4096 and emulator.models[MODEL].loaded
    await polls(server, 5)
    loads = [r for r in emulator.log if r.path == "/api/v1/models/load"]
    assert len(loads) == 2  # the failed load and the restore; no retry while backing off
    assert MODEL in server.daemon.watcher.to_json()["backing_off"]


async def test_a_user_reverting_the_context_is_not_fought(start_lmsd, emulator):
    emulator.models[MODEL].context_length = 4096
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.05")
    with server.daemon.bus.subscribe(types=("model",), replay=500) as sub:
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
        while not server.daemon.watcher.reloading(MODEL):
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
        while not server.daemon.watcher.reloading(MODEL):
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
    with server.daemon.bus.subscribe(types=("upstream",), replay=500) as sub:
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


# -- supervision -------------------------------------------------------------------------------

async def test_a_watcher_crash_is_restarted_and_the_proxy_keeps_serving(start_lmsd, emulator,
                                                                        monkeypatch):
    from lmsd.upstreams.watcher import Watcher

    real = Watcher.poll_once
    crashes = []
    go = trio.Event()  # crash only once the test listens

    async def flaky(self):
        if not crashes:
            await go.wait()
            crashes.append(1)
            raise RuntimeError("watcher bug")
        await real(self)

    monkeypatch.setattr(Watcher, "poll_once", flaky)
    monkeypatch.setattr("lmsd.daemon.supervisor.RESTART_MIN", 0.01)
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.05")
    with server.daemon.bus.subscribe(types=("child",)) as sub:
        go.set()
        crashed = await next_event(sub, "child.crashed")
        await next_event(sub, "child.restarted")
    assert crashed["child"] == "watcher" and "watcher bug" in crashed["error"]
    with trio.fail_after(10):
        while not server.daemon.watcher.polls:
            await trio.sleep(0.05)
    emulator.script(Reply(Text("still serving")))
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="x",
                                        max_retries=0) as client:
        msg = await client.messages.create(model="claude-x", max_tokens=5,
                                           messages=[{"role": "user", "content": "x"}])
    assert msg.content[0].text == "still serving"


async def test_an_admin_crash_is_restarted(start_lmsd, emulator, monkeypatch):
    import socket
    from functools import partial

    import lmsd.daemon.supervisor as server_module

    real = server_module.hypercorn_serve
    calls: list[int] = []
    go = trio.Event()  # crash only once the test listens

    async def crashing_admin(app, config, *, task_status=trio.TASK_STATUS_IGNORED, **kw):
        if app.name == "lmsd.admin" and not calls:
            calls.append(1)
            async with trio.open_nursery() as nursery:
                binds = await nursery.start(partial(real, app, config, **kw))
                task_status.started(binds)
                await go.wait()
                nursery.cancel_scope.cancel()
            raise RuntimeError("admin listener died")
        return await real(app, config, task_status=task_status, **kw)

    monkeypatch.setattr(server_module, "hypercorn_serve", crashing_admin)
    monkeypatch.setattr(server_module, "RESTART_MIN", 0.01)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = await start_lmsd(emulator.url, admin_listen=f"127.0.0.1:{port}")
    with server.daemon.bus.subscribe(types=("child",)) as sub:
        go.set()
        crashed = await next_event(sub, "child.crashed")
        await next_event(sub, "child.restarted")
    assert crashed["child"] == "admin" and "admin listener died" in crashed["error"]
    with trio.fail_after(10):
        while True:
            try:
                if (await admin_get(server, "/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                await trio.sleep(0.05)
    assert len(calls) == 1


# -- admin API ---------------------------------------------------------------------------------

async def test_status_sessions_reset_and_config(client, emulator, lmsd):
    emulator.script(*tool_turns(2))
    chat = Conversation(client, session="admin-1")
    await chat.send("start")
    await chat.send()
    status = (await admin_get(lmsd, "/status")).json()
    assert status["upstream"]["url"] == emulator.url
    assert status["upstream"]["source"] == "config"
    assert status["requests"]["requests"] == 2 and status["store"]["nodes"] == 2
    assert "hunter2" not in json.dumps(status)
    sessions = (await admin_get(lmsd, "/sessions")).json()["sessions"]
    [one] = [s for s in sessions if s["session"] == "admin-1"]
    [agent] = one["agents"]
    assert (agent["agent"], agent["model"], agent["turns"], agent["chain_hits"]) == (
        "main", MODEL, 2, 1)
    assert agent["misses"] == {"no_node": 1}
    assert agent["last_response_id"] == emulator.generations[-1].response_id
    assert (await admin_get(lmsd, "/sessions/admin-1")).json()["session"] == "admin-1"
    assert (await admin_get(lmsd, "/sessions/nobody")).status_code == 404
    async with httpx.AsyncClient(base_url=lmsd.admin_url) as http:
        put = await http.put("/sessions/admin-1/config", json={"model": "other/model"})
        assert put.json()["config"]["model"] == "other/model"
        reset = (await http.delete("/sessions/admin-1")).json()
        assert reset == {"reset": "admin-1", "chain_nodes": 2}
        assert (await http.delete("/sessions")).status_code == 200
    assert lmsd.store.node_count() == 0


async def test_metrics(client, emulator, lmsd):
    emulator.script(Reply(Text("x")))
    await client.messages.create(model="claude-x", max_tokens=5,
                                 messages=[{"role": "user", "content": "x"}])
    text = (await admin_get(lmsd, "/metrics")).text
    for name in ("lmsd_requests_total", "lmsd_time_to_first_token_seconds_bucket",
                 "lmsd_request_duration_seconds_count", "lmsd_input_tokens_total",
                 "lmsd_output_tokens_total", "lmsd_chain_decisions_total",
                 "lmsd_requests_in_flight", "lmsd_upstream_first_event_seconds_count"):
        assert name in text, name
    assert 'lmsd_requests_total{outcome="ok",stream="False"} 1.0' in text


async def test_event_tail_filters_by_session_and_type(client, emulator, lmsd):
    emulator.script(*tool_turns(1), *tool_turns(1))
    url = lmsd.admin_url.replace("http", "ws")
    async with trio_websocket.open_websocket_url(f"{url}/events?session=tail-a&type=request"
                                                 ) as ws:
        assert json.loads(await ws.get_message())["type"] == "subscribed"
        await Conversation(client, session="tail-b").send("other session")
        await Conversation(client, session="tail-a").send("mine")
        with trio.fail_after(10):
            first = json.loads(await ws.get_message())
            second = json.loads(await ws.get_message())
    assert (first["type"], second["type"]) == ("request.start", "request.end")
    assert first["session"] == second["session"] == "tail-a"
    assert second["outcome"] == "ok" and "ttft_ms" in second and second["output_tokens"] > 0


async def test_a_slow_subscriber_is_told_what_it_missed():
    bus = EventBus(queue_size=4)
    with bus.subscribe() as sub:
        for n in range(10):
            bus.publish({"type": "x", "n": n})  # never blocks the publisher
        got = [await sub.next() for _ in range(5)]
    assert got[0]["type"] == "dropped" and got[0]["count"] == 6
    assert [g["n"] for g in got[1:]] == [0, 1, 2, 3]


async def test_websocket_from_a_foreign_origin_is_refused(lmsd):
    url = lmsd.admin_url.replace("http", "ws")
    with pytest.raises(trio_websocket.HandshakeError):
        async with trio_websocket.open_websocket_url(
                f"{url}/events", extra_headers=[("Origin", "https://evil.example")]):
            pass


async def test_token_required_when_configured(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, admin_token="hunter2")
    assert (await admin_get(server, "/status")).status_code == 401
    good = await admin_get(server, "/status", headers={"Authorization": "Bearer hunter2"})
    assert good.status_code == 200 and "hunter2" not in good.text
    assert (await admin_get(server, "/healthz", headers={
        "Authorization": "Bearer wrong"})).status_code == 401
    url = server.admin_url.replace("http", "ws")
    with pytest.raises(trio_websocket.HandshakeError):
        async with trio_websocket.open_websocket_url(f"{url}/events"):
            pass
    async with trio_websocket.open_websocket_url(
            f"{url}/events", extra_headers=[("Authorization", "Bearer hunter2")]) as ws:
        assert json.loads(await ws.get_message())["type"] == "subscribed"


async def test_admin_beyond_loopback_without_token_refuses_to_start(tmp_path):
    settings = load_settings({"admin_listen": "0.0.0.0:0", "listen": "127.0.0.1:0",
                              "upstream": "http://127.0.0.1:9",
                              "state_dir": str(tmp_path)}, {})
    with pytest.raises(ConfigError, match="admin_token"):
        await serve(settings, shutdown=trio.Event())


async def test_replay_delivers_recent_matching_events():
    bus = EventBus()
    for n in range(5):
        bus.publish({"type": "model.loaded" if n % 2 else "request.end", "n": n})
    with bus.subscribe(types=("model",), replay=10) as sub:
        assert [(await sub.next())["n"] for _ in range(2)] == [1, 3]


async def test_rejected_requests_show_in_the_tail_and_the_metrics(lmsd, emulator):
    with lmsd.daemon.bus.subscribe(types=("request",)) as sub:
        async with httpx.AsyncClient(base_url=lmsd.url) as http:
            await http.post("/v1/messages", content=b"{broken",
                            headers={"Content-Type": "application/json"})
        rejected = await next_event(sub, "request.rejected")
    assert (rejected["status"], rejected["error_type"]) == (400, "invalid_request_error")
    assert "not valid JSON" in rejected["error"] and rejected["path"] == "/v1/messages"
    text = (await admin_get(lmsd, "/metrics")).text
    assert 'lmsd_errors_total{type="invalid_request_error"} 1.0' in text
