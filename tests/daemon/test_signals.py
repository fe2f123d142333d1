"""lmsd as a process: SIGTERM drains and exits 0, SIGHUP reloads, systemd notify."""

from __future__ import annotations

import signal
import socket

import httpx
import trio

from tests.emulator import Reply, Text
from tests.support.anthropic_checks import check_stream, parse_sse
from tests.support.processes import start_daemon


async def start(nursery, args: list[str], env: dict[str, str] | None = None):
    return await start_daemon(nursery, "--no-watch", *args, env=env)


async def test_sigterm_drains_in_flight_streams_then_exits_0(nursery, emulator, tmp_path):
    emulator.token_delay = 0.05
    emulator.script(Reply(Text("short")), *[Reply(Text("word " * 400)) for _ in range(9)])
    proc, url, _ = await start(nursery, ["--upstream", emulator.url, "--state-dir",
                                         str(tmp_path), "--drain-timeout", "1"])
    results: list[bytes] = []
    payload = {"model": "claude-x", "max_tokens": 5000, "stream": True,
               "messages": [{"role": "user", "content": "go"}]}

    async def stream_one(client: httpx.AsyncClient) -> None:
        async with client.stream("POST", f"{url}/v1/messages", json=payload) as response:
            results.append(await response.aread())

    async with httpx.AsyncClient(timeout=30) as client, trio.open_nursery() as streams:
        for _ in range(10):
            streams.start_soon(stream_one, client)
        with trio.fail_after(10):
            while len(emulator.generations) < 10:
                await trio.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
    with trio.fail_after(30):
        code = await proc.wait()
    assert code == 0
    outcomes = sorted(check_stream(parse_sse(raw)) for raw in results)
    assert outcomes.count("complete") >= 1  # the short one finished within the grace
    cut = [parse_sse(raw)[-1] for raw in results if check_stream(parse_sse(raw)) == "error"]
    assert len(cut) == 9
    assert all("shutting down" in e["error"]["message"] for e in cut)
    async with httpx.AsyncClient() as http:  # and it is really gone
        try:
            await http.get(url)
            raise AssertionError("still listening")
        except httpx.ConnectError:
            pass


async def test_sighup_reloads_live_settings(nursery, emulator, tmp_path):
    config = tmp_path / "lmsd.toml"
    config.write_text('model = "first/model"\nping_interval = 10\n')
    proc, url, admin = await start(nursery, ["--upstream", emulator.url, "--state-dir",
                                             str(tmp_path), "--config", str(config)])
    config.write_text('model = "qwen/qwen3-coder-30b"\nping_interval = 2\n'
                      'session_max_nodes = 5\n')
    proc.send_signal(signal.SIGHUP)
    async with httpx.AsyncClient() as http:
        with trio.fail_after(10):
            while True:
                settings = (await http.get(f"{admin}/status")).json()["settings"]
                if settings["model"] == "qwen/qwen3-coder-30b":
                    break
                await trio.sleep(0.05)
        assert settings["ping_interval"] == 2
        assert settings["session_max_nodes"] == 10000  # needs a restart: unchanged
        response = await http.post(f"{url}/v1/messages", json={
            "model": "claude-x", "max_tokens": 5, "messages": [{"role": "user",
                                                                 "content": "x"}]})
    assert response.status_code == 200
    assert emulator.generations[-1].body["model"] == "qwen/qwen3-coder-30b"
    proc.send_signal(signal.SIGTERM)
    assert await proc.wait() == 0


async def test_sighup_rotates_the_admin_token(nursery, emulator, tmp_path):
    config = tmp_path / "lmsd.toml"
    config.write_text('admin_token = "first-token"\n')
    proc, _, admin = await start(nursery, ["--upstream", emulator.url, "--state-dir",
                                           str(tmp_path), "--config", str(config)])

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async with httpx.AsyncClient(base_url=admin) as http:
        assert (await http.get("/status", headers=bearer("first-token"))).status_code == 200
        config.write_text('admin_token = "second-token"\n')
        proc.send_signal(signal.SIGHUP)
        with trio.fail_after(10):
            while (await http.get("/status", headers=bearer("first-token"))).status_code \
                    == 200:
                await trio.sleep(0.05)
        assert (await http.get("/status", headers=bearer("first-token"))).status_code == 401
        assert (await http.get("/status", headers=bearer("second-token"))).status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert await proc.wait() == 0


async def test_systemd_notify_protocol(nursery, emulator, tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await sock.bind(path)
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}
    proc, _, _ = await start(nursery, ["--upstream", emulator.url, "--state-dir",
                                       str(tmp_path)], env)
    messages: list[str] = []
    with trio.fail_after(10):
        while not any(m.startswith("READY=1") for m in messages) or \
                messages.count("WATCHDOG=1") < 2:
            messages.append((await sock.recv(4096)).decode())
    ready = next(m for m in messages if m.startswith("READY=1"))
    assert f"MAINPID={proc.pid}" in ready
    proc.send_signal(signal.SIGTERM)
    with trio.fail_after(10):
        while "STOPPING=1" not in messages:
            messages.append((await sock.recv(4096)).decode())
    assert await proc.wait() == 0
    sock.close()


async def test_sighup_applies_a_new_upstream_api_key(nursery, emulator, tmp_path):
    """LM Studio's token rotated: put the new one in the config file and SIGHUP; no
    restart, and the key never appears in the logs or the answers."""
    emulator.api_key = "second-key"
    config = tmp_path / "lmsd.toml"
    config.write_text('upstream_api_key = "first-key"\n')
    proc, url, _ = await start(nursery, ["--upstream", emulator.url, "--state-dir",
                                         str(tmp_path), "--config", str(config),
                                         "--model", "qwen/qwen3-coder-30b"])
    payload = {"model": "claude-x", "max_tokens": 5,
               "messages": [{"role": "user", "content": "x"}]}
    async with httpx.AsyncClient(timeout=30) as http:
        refused = await http.post(f"{url}/v1/messages", json=payload)
        assert refused.status_code == 403
        assert "refused the API key" in refused.text and "first-key" not in refused.text
        config.write_text('upstream_api_key = "second-key"\n')
        proc.send_signal(signal.SIGHUP)
        with trio.fail_after(10):
            while (await http.post(f"{url}/v1/messages", json=payload)).status_code != 200:
                await trio.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert await proc.wait() == 0
