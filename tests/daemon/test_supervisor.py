"""The supervisor in-process: a crashed watcher or admin API is restarted, and an admin API
beyond loopback without a token refuses to start."""

from __future__ import annotations

import anthropic
import httpx
import pytest
import trio

from lmsd.config import ConfigError, load_settings
from lmsd.daemon.supervisor import serve
from tests.emulator import Reply, Text
from tests.support.daemon import admin_get, next_event


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
    with server.bus.subscribe(types=("child",)) as sub:
        go.set()
        crashed = await next_event(sub, "child.crashed")
        await next_event(sub, "child.restarted")
    assert crashed["child"] == "watcher" and "watcher bug" in crashed["error"]
    with trio.fail_after(10):
        while not server.router.backends[0].watcher.polls:
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
    with server.bus.subscribe(types=("child",)) as sub:
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


async def test_admin_beyond_loopback_without_token_refuses_to_start(tmp_path):
    settings = load_settings({"admin_listen": "0.0.0.0:0", "listen": "127.0.0.1:0",
                              "upstream": "http://127.0.0.1:9",
                              "state_dir": str(tmp_path)}, {})
    with pytest.raises(ConfigError, match="admin_token"):
        await serve(settings, shutdown=trio.Event())


