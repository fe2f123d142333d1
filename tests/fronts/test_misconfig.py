"""Misconfiguration says what to do: an LM Studio that wants an API key, an upstream URL
ending in /v1, startup failures, the default config file, a chat server's 200 errors."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from lmsd.config import load_settings
from lmsd.ops.client import format_status
from lmsd.ops.doctor import diagnose
from lmsd.ops.doctor_upstream import check_api, check_models
from lmsd.upstreams import discovery
from lmsd.upstreams.discovery import Found
from tests.emulator.auth import MISSING_TOKEN
from tests.support.upstream_key import KEY, NEEDS_KEY

MODEL = "qwen/qwen3-coder-30b"
HI = {"model": "claude-sonnet-4-6", "max_tokens": 20,
      "messages": [{"role": "user", "content": "hi"}]}


async def post(server: Any, body: dict[str, Any] = HI) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.post("/v1/messages", json=body)


async def admin_status(server: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.admin_url) as http:
        return (await http.get("/status")).json()


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["type"], error["message"]


def sse_errors(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:])["error"] for line in text.splitlines()
            if line.startswith("data: ") and '"type":"error"' in line.replace(" ", "")]


async def refused_polls(server: Any, emulator: Any, count: int) -> None:
    """Wait until the watcher was refused ``count`` times and lmsd reports it."""
    def refused() -> int:
        return sum(r.path == "/api/v1/models" and r.status == 401 for r in emulator.log)

    with trio.fail_after(20):
        while refused() < count or not (await admin_status(server))["upstream"].get("refused"):
            await trio.sleep(0.01)


# -- 1. an LM Studio that requires an API key ---------------------------------------------------


async def test_the_emulator_requires_a_key_as_lm_studio_does(emulator):
    emulator.api_key = KEY
    async with httpx.AsyncClient(base_url=emulator.url) as http:
        assert (await http.get("/lmstudio-greeting")).json() == {"lmstudio": True}
        for path in ("/v1/models", "/api/v1/models", "/api/v0/models"):
            missing = await http.get(path)
            assert missing.status_code == 401
            assert missing.json() == {"error": {"type": "invalid_request", "code":
                                                "invalid_api_key", "message": MISSING_TOKEN}}
        malformed = await http.get("/v1/models", headers={"Authorization": "Bearer lm-studio-x"})
        assert malformed.json()["error"]["message"] == (
            "Malformed LM Studio API token provided: lm-studio-*****")
        good = await http.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
        assert good.status_code == 200 and good.json()["data"][0]["id"] == MODEL
        answer = await http.post("/v1/responses", json={"model": MODEL, "input": "hi"})
        assert answer.status_code == 401


async def test_a_key_lm_studio_requires_is_named_in_the_error(start_lmsd, emulator):
    emulator.api_key = KEY
    server = await start_lmsd(emulator.url)
    for stream in (False, True):
        status, kind, message = error_of(await post(server, {**HI, "stream": stream}))
        assert (status, kind) == (403, "permission_error")  # Claude Code: no retry loop
        assert message.startswith(NEEDS_KEY)
        assert "no model loaded" not in message
    # with a model configured, it is the generation itself that is refused
    pinned = await start_lmsd(emulator.url, model=MODEL)
    for stream in (False, True):
        response = await post(pinned, {**HI, "stream": stream})
        if stream:
            assert response.status_code == 200
            [error] = sse_errors(response.text)
            kind, message = error["type"], error["message"]
        else:
            _, kind, message = error_of(response)
            assert response.status_code == 403
        assert kind == "permission_error" and message.startswith(NEEDS_KEY)


async def test_the_watcher_reports_a_missing_key_and_backs_off_without_crashing(start_lmsd,
                                                                                 emulator):
    emulator.api_key = KEY
    server = await start_lmsd(emulator.url, poll_interval="0.01")
    watcher = server.daemon.watcher
    await refused_polls(server, emulator, 4)
    types = [e["type"] for e in server.daemon.bus.recent]
    assert "child.crashed" not in types and "child.restarted" not in types
    assert types.count("upstream.refused") == 1  # said once, not every poll
    assert watcher.next_poll_in() > 0.01  # backing off
    status = await admin_status(server)
    assert status["upstream"]["refused"].startswith(NEEDS_KEY)
    assert status["upstream"]["reachable"] is True
    assert f"REFUSED: {NEEDS_KEY}" in format_status(status)
    # LM Studio's authentication turned off: the watcher picks the models up again
    emulator.api_key = None
    with trio.fail_after(20):
        while not watcher.polls:
            await trio.sleep(0.01)
    assert watcher.refused is None and watcher.next_poll_in() == 0.01
    assert "REFUSED" not in format_status(await admin_status(server))


async def test_a_wrong_key_is_said_to_be_refused(start_lmsd, emulator):
    emulator.api_key = KEY
    for wrong, said in (("lm-studio-local", "Malformed LM Studio API token provided"),
                        ("sk-lm-Zz99:Yy88", "Invalid LM Studio API token provided")):
        server = await start_lmsd(emulator.url, upstream_api_key=wrong, poll_interval="0.01")
        status, kind, message = error_of(await post(server))
        assert (status, kind) == (403, "permission_error")
        assert message.startswith("LM Studio refused the API key in LMSD_UPSTREAM_API_KEY "
                                  f"(HTTP 401: {said}")
        assert wrong not in message
        await refused_polls(server, emulator, 1)
        assert (await admin_status(server))["upstream"]["refused"] == message


async def test_the_right_key_is_sent_everywhere(start_lmsd, emulator):
    emulator.api_key = KEY
    server = await start_lmsd(emulator.url, upstream_api_key=KEY, watch="true",
                              poll_interval="0.01")
    response = await post(server)
    assert response.status_code == 200, response.text
    with trio.fail_after(20):
        while not server.daemon.watcher.polls:
            await trio.sleep(0.01)
    assert all(r.status != 401 for r in emulator.log)
    assert KEY not in json.dumps(await admin_status(server))


async def test_doctor_fails_a_missing_or_refused_key_with_the_fix(emulator, tmp_path):
    emulator.api_key = KEY
    found = Found(emulator.url, "config", True)
    async with httpx.AsyncClient() as client:
        for key, start in (("", NEEDS_KEY), ("sk-lm-Zz99:Yy88", "LM Studio refused the API key")):
            settings = load_settings({"upstream": emulator.url, "upstream_api_key": key}, {})
            result = await check_models(settings, found, client)
            assert (result.check, result.status) == ("api_key", "fail")
            assert result.detail.startswith(start) and "Manage Tokens" in (result.fix or "")
        settings = load_settings({"upstream": emulator.url, "upstream_api_key": KEY}, {})
        result = await check_models(settings, found, client)
        assert (result.check, result.status) == ("model", "ok")


# -- 2. an upstream URL in the OpenAI base-URL form -----------------------------------------------


async def test_an_upstream_ending_in_v1_is_used_without_it(start_lmsd, emulator):
    server = await start_lmsd(emulator.url + "/v1/")
    assert server.daemon.upstream.base_url == emulator.url
    adjusted = [e for e in server.daemon.bus.recent if e["type"] == "config.adjusted"]
    assert len(adjusted) == 1 and adjusted[0]["key"] == "upstream"
    assert f"using {emulator.url}" in adjusted[0]["note"]
    response = await post(server)
    assert response.status_code == 200, response.text
    status = await admin_status(server)
    assert status["upstream"]["api"] == "responses"  # LM Studio, not the chat fallback


@pytest.fixture
def no_lmstudio_here(monkeypatch, tmp_path, dead_port):
    monkeypatch.setattr(discovery, "DEFAULT_PORT", dead_port)
    monkeypatch.setenv("LMSTUDIO_HOME", str(tmp_path / "no-lmstudio"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))


async def test_doctor_agrees_with_the_daemon_on_a_v1_upstream(emulator, tmp_path,
                                                              no_lmstudio_here):
    settings = load_settings({"upstream": emulator.url + "/v1",
                              "state_dir": str(tmp_path / "state")}, {})
    results = {r.check: r for r in await diagnose(settings, {"HOME": str(tmp_path)})}
    assert results["lmstudio"].status == "ok" and emulator.url in results["lmstudio"].detail
    assert results["api"].detail.startswith("responses")
    assert results["model"].status == "ok"
    assert results["config"].status == "warn"
    assert results["config"].fix == f"set upstream = {emulator.url!r}"
    async with httpx.AsyncClient() as client:
        api = await check_api(settings, Found(settings.upstream, "config", True), client)
    assert api.detail.startswith("responses")


# -- 3-5. startup failures are one line -----------------------------------------------------------


async def serve_fails(tmp_path: Path, *args: str, env: dict[str, str] | None = None
                      ) -> tuple[int, list[str]]:
    """Run ``lmsd serve ARGS``; it must exit on its own. (exit status, stderr lines)"""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LMSD_", "XDG_"))}
    argv = [sys.executable, "-m", "lmsd", "serve", "--upstream", "http://127.0.0.1:9",
            "--state-dir", str(tmp_path / "state"), *args]
    with trio.fail_after(60):
        done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                      check=False, env={**base, **(env or {})})
    return done.returncode, done.stderr.decode().splitlines()


@pytest.mark.parametrize("which", ["listen", "admin_listen"])
async def test_a_port_in_use_is_one_line(which, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0",
                 which: f"127.0.0.1:{port}"}
        status, lines = await serve_fails(
            tmp_path, "--listen", ports["listen"], "--admin-listen", ports["admin_listen"],
            env={"HOME": str(tmp_path)})
    assert status == 1
    assert lines == [f"lmsd: cannot start: cannot listen on 127.0.0.1:{port} ({which}): "
                     "Address already in use"]


async def test_admin_off_loopback_without_a_token_is_one_line(tmp_path):
    status, lines = await serve_fails(tmp_path, "--listen", "127.0.0.1:0",
                                      "--admin-listen", "0.0.0.0:0", env={"HOME": str(tmp_path)})
    assert status == 2
    assert len(lines) == 1 and lines[0].startswith(
        "lmsd: config error: admin_listen 0.0.0.0:0 is not a loopback address: set admin_token")


async def test_the_default_config_file_is_read_and_a_bad_model_map_is_one_line(tmp_path):
    config = tmp_path / "xdg" / "lmsd" / "lmsd.toml"
    config.parent.mkdir(parents=True)
    config.write_text('listen = "127.0.0.1:0"\nadmin_listen = "127.0.0.1:0"\n'
                      '[model_map]\nopus = "big"\nhaiku = 4\n')
    status, lines = await serve_fails(tmp_path, env={"XDG_CONFIG_HOME": str(tmp_path / "xdg"),
                                           "HOME": str(tmp_path)})
    assert status == 2
    assert lines == [f"lmsd: config error: config file {config}: model_map: 'haiku' must name "
                     "a model (a non-empty string), got 4"]


# -- 6. a chat server answering HTTP 200 with {"error": ...} ---------------------------------------


async def test_a_chat_answer_of_200_with_an_error_is_that_error(start_lmsd, emulator):
    # The emulator answers an unknown endpoint as LM Studio does: 200 and an error string.
    server = await start_lmsd(emulator.url + "/no/such/prefix", upstream_api="chat",
                              model=MODEL)
    said = "Unexpected endpoint or method. (POST /no/such/prefix/v1/chat/completions)"
    plain = await post(server)
    status, kind, message = error_of(plain)
    assert (status, kind) == (502, "api_error") and said in message
    streamed = await post(server, {**HI, "stream": True})
    [error] = sse_errors(streamed.text)
    assert error["type"] == "api_error" and said in error["message"]
    assert '"text_delta"' not in streamed.text and '"message_stop"' not in streamed.text
