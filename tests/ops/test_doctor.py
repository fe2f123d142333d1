"""``lmsd doctor``: every check against the emulator, lmsd itself and broken setups."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from lmsd import __version__
from lmsd.config import Settings, load_settings
from lmsd.ops import doctor, doctor_host, doctor_shell, doctor_upstream
from lmsd.ops.client import LiveContext, local_url
from lmsd.ops.codex_env import codex_config
from lmsd.ops.doctor import Result, diagnose
from lmsd.protocol.compaction import claude_code_env
from lmsd.upstreams import discovery
from lmsd.upstreams.discovery import Found

MODEL = "qwen/qwen3-coder-30b"


# -- helpers -----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]




@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path, dead_port):
    """No real LM Studio (its home, its port 1234, its `lms`) leaks into these tests."""
    monkeypatch.setattr(discovery, "DEFAULT_PORT", dead_port)
    monkeypatch.setenv("LMSTUDIO_HOME", str(tmp_path / "no-lmstudio"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    (tmp_path / "bin").mkdir()


def settings_for(tmp_path: Path, upstream: str, **flags: Any) -> Settings:
    values = {"listen": f"127.0.0.1:{free_port()}", "admin_listen": f"127.0.0.1:{free_port()}",
              "upstream": upstream, "state_dir": str(tmp_path / "state"), **flags}
    return load_settings(values, {})


def shell(tmp_path: Path, settings: Settings, **changes: str | None) -> dict[str, str]:
    """A calling shell set up for Claude Code; ``NAME=None`` unsets NAME."""
    env = {"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path / "home"),
           "ANTHROPIC_BASE_URL": local_url(settings.listen), "ANTHROPIC_AUTH_TOKEN": "lmsd",
           "CLAUDE_CODE_ATTRIBUTION_HEADER": "0", **changes}
    return {k: v for k, v in env.items() if v is not None}


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


async def check(settings: Settings, env: dict[str, str], name: str, **kw: Any) -> Result:
    results = await diagnose(settings, env, **kw)
    return next(r for r in results if r.check == name)


# -- 1. LM Studio ------------------------------------------------------------------------------

async def test_everything_fine_against_the_emulator(emulator, tmp_path):
    settings = settings_for(tmp_path, emulator.url)
    script(tmp_path / "bin" / "claude", 'echo "2.1.329 (Claude Code)"\n')
    script(tmp_path / "bin" / "systemctl",
           'case "$2" in is-enabled) echo enabled;; is-active) echo active;; esac\n')
    codex = tmp_path / "home" / ".codex" / "config.toml"  # as `lmsd env --codex` prints it
    codex.parent.mkdir(parents=True)
    codex.write_text(codex_config(settings, LiveContext(32768, "the emulator's model")))
    results = await diagnose(settings, shell(tmp_path, settings, **claude_code_env(32768)))
    assert [r.check for r in results] == [
        "lmstudio", "api", "model", "cache", "claude_context", "codex_config",
        "proxy_port", "admin_port", "state_dir", "network", "service", "base_url",
        "attribution_header", "auth_token", "claude"]
    assert all(r.status == "ok" and r.fix is None for r in results), results
    cache = next(r for r in results if r.check == "cache")
    assert cache.detail.startswith("no slots to steer: lmsd re-warms")  # LM Studio
    lmstudio, api = results[0], results[1]
    assert lmstudio.detail == f"LM Studio at {emulator.url} (found by: config) answers"
    assert api.detail.startswith("responses, with previous_response_id chaining")


async def test_unreachable_lmstudio_fails_and_skips_the_model_check(tmp_path, dead_port):
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}")
    results = await diagnose(settings, shell(tmp_path, settings))
    lmstudio, api, model = results[0], results[1], results[2]
    assert api.status == "skip"
    assert lmstudio.status == "fail"
    assert "not reachable" in lmstudio.detail and "(found by: config)" in lmstudio.detail
    assert "lms server start" in lmstudio.fix and f"127.0.0.1:{dead_port}" in lmstudio.fix
    assert model.status == "skip" and "not reachable" in model.detail


async def test_auto_discovery_through_lmstudio_home(emulator, tmp_path, monkeypatch):
    home = tmp_path / "lmstudio"
    (home / ".internal").mkdir(parents=True)
    port = int(emulator.url.rsplit(":", 1)[1])
    (home / ".internal" / "http-server-config.json").write_text(json.dumps({"port": port}))
    monkeypatch.setenv("LMSTUDIO_HOME", str(home))  # PATH (set by `isolated`) has no lms
    settings = settings_for(tmp_path, "auto")
    result = await check(settings, shell(tmp_path, settings), "lmstudio")
    assert result == Result("lmstudio", "ok", f"LM Studio at http://127.0.0.1:{port} "
                            "(found by: http-server-config.json) answers")


async def test_auto_discovery_finding_nothing(tmp_path):
    settings = settings_for(tmp_path, "auto")
    result = await check(settings, shell(tmp_path, settings), "lmstudio")
    assert result.status == "fail"
    assert result.detail == ("LM Studio at http://localhost:1234 (found by: default) is not "
                             "reachable")
    assert "lms server start" in result.fix and "upstream = URL" in result.fix


# -- 2. the loaded model -----------------------------------------------------------------------

async def test_model_loaded_with_enough_context(emulator, tmp_path):
    settings = settings_for(tmp_path, emulator.url)
    result = await check(settings, shell(tmp_path, settings), "model")
    assert result == Result("model", "ok", f"loaded: {MODEL} (32768 tokens of context)")


@pytest.mark.parametrize("watch", ["true", "false"])
async def test_model_below_min_context_warns(emulator, tmp_path, watch):
    emulator.models[MODEL].context_length = 4096
    settings = settings_for(tmp_path, emulator.url, watch=watch)
    result = await check(settings, shell(tmp_path, settings), "model")
    assert result.status == "warn"
    assert f"{MODEL} (4096 tokens of context, below min_context 32768)" in result.detail
    assert ("lmsd raises it to 32768" in result.detail) == (watch == "true")
    assert result.fix == f"`lms unload {MODEL} && lms load {MODEL} --exact -c 32768`"


async def test_model_that_cannot_hold_min_context(emulator, tmp_path):
    emulator.models[MODEL].context_length = 4096
    emulator.models[MODEL].max_context_length = 8192
    settings = settings_for(tmp_path, emulator.url)
    result = await check(settings, shell(tmp_path, settings), "model")
    assert result.status == "warn" and "holds at most 8192 tokens" in result.fix


async def test_no_model_loaded_fails(emulator, tmp_path):
    emulator.models[MODEL].loaded = False
    settings = settings_for(tmp_path, emulator.url, min_context="65536")
    result = await check(settings, shell(tmp_path, settings), "model")
    assert result.status == "fail"
    assert result.detail == f"no model is loaded in LM Studio at {emulator.url}"
    assert result.fix == f"load a model in LM Studio, or run `lms load {MODEL} -c 65536`"


async def test_models_fall_back_to_api_v0():
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v0/models":
            return httpx.Response(200, json={"data": [
                {"id": "a/b", "type": "llm", "state": "loaded", "loaded_context_length": 40000,
                 "max_context_length": 131072},
                {"id": "c/d", "type": "embeddings", "state": "loaded"}]})
        return httpx.Response(404, json={"error": "not found"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        result = await doctor_upstream.check_models(
            Settings(), Found("http://lms.test", "config", True), client)
    assert result == Result("model", "ok", "loaded: a/b (40000 tokens of context)")


# -- 2b. Claude Code's compaction against the loaded context ------------------------------


async def test_context_env_missing_warns_with_the_fix(emulator, tmp_path):
    """The loaded 32k context with Claude Code's defaults (a 1m window): compaction at 967k."""
    settings = settings_for(tmp_path, emulator.url)
    result = await check(settings, shell(tmp_path, settings), "claude_context")
    assert result.status == "warn"
    assert "would compact at 967000 tokens but the loaded context is 32768" in result.detail
    assert result.fix == 'eval "$(lmsd env)"'


async def test_context_env_for_another_context_warns(emulator, tmp_path):
    """Settings printed for 64k no longer fit once the model is loaded at 32k."""
    settings = settings_for(tmp_path, emulator.url)
    env = shell(tmp_path, settings, **claude_code_env(65536))
    result = await check(settings, env, "claude_context")
    assert result.status == "warn" and "overflows first" in result.detail


async def test_context_env_for_a_local_model(emulator, tmp_path):
    settings = settings_for(tmp_path, emulator.url)
    model = "qwen/qwen3-coder-30b"
    # the percentage for Claude names also shrinks a local id's real window: far too early
    mixed = {**claude_code_env(32768), "CLAUDE_CODE_MAX_CONTEXT_TOKENS": "32768"}
    result = await check(settings, shell(tmp_path, settings, ANTHROPIC_MODEL=model, **mixed),
                         "claude_context")
    assert result.status == "warn" and "far below" in result.detail
    assert result.fix == f'eval "$(lmsd env --model {model})"'
    env = shell(tmp_path, settings, ANTHROPIC_MODEL=model, **claude_code_env(32768, model))
    result = await check(settings, env, "claude_context")
    assert result.status == "ok", result
    assert result.detail == ("Claude Code compacts at 15672 tokens, within the loaded "
                             "context of 32768")


async def test_context_env_reads_the_running_daemon(start_lmsd, emulator, tmp_path):
    """With lmsd running, its live view counts: it saw 32k, LM Studio now says 64k."""
    server = await start_lmsd(emulator.url, poll_interval="3600")
    with trio.fail_after(10):
        while not server.router.backends[0].watcher.models:
            await trio.sleep(0.05)
    emulator.models["qwen/qwen3-coder-30b"].context_length = 65536
    settings = settings_for(tmp_path, emulator.url,
                            admin_listen=urlsplit(server.admin_url).netloc)
    env = shell(tmp_path, settings, **claude_code_env(65536))
    result = await check(settings, env, "claude_context")
    assert result.status == "warn" and "the loaded context is 32768" in result.detail


async def test_context_env_skipped_without_a_loaded_model(tmp_path, dead_port):
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}")
    result = await check(settings, shell(tmp_path, settings), "claude_context")
    assert result.status == "skip" and result.fix is None


# -- 3. the ports ------------------------------------------------------------------------------

async def test_ports_free(tmp_path, dead_port):
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}")
    results = {r.check: r for r in await diagnose(settings, shell(tmp_path, settings))}
    assert results["proxy_port"] == Result("proxy_port", "ok", f"{settings.listen} is free")
    assert results["admin_port"] == Result("admin_port", "ok",
                                           f"{settings.admin_listen} is free")


async def test_ports_taken_by_lmsd(start_lmsd, emulator, tmp_path):
    server = await start_lmsd(emulator.url)
    settings = settings_for(tmp_path, emulator.url, listen=server.url.split("//")[1],
                            admin_listen=server.admin_url.split("//")[1])
    results = {r.check: r for r in await diagnose(settings, shell(tmp_path, settings))}
    for name in ("proxy_port", "admin_port"):
        assert results[name].status == "ok"
        assert results[name].detail.startswith(f"lmsd {__version__} is running here")


async def test_admin_port_of_lmsd_with_a_token(start_lmsd, emulator, tmp_path):
    server = await start_lmsd(emulator.url, admin_token="s3cret")
    admin = server.admin_url.split("//")[1]
    wrong = settings_for(tmp_path, emulator.url, admin_listen=admin)
    result = await check(wrong, shell(tmp_path, wrong), "admin_port")
    assert result.status == "warn" and "refused the admin token" in result.detail
    assert "LMSD_ADMIN_TOKEN" in result.fix
    right = settings_for(tmp_path, emulator.url, admin_listen=admin)
    right.admin_token = "s3cret"
    assert (await check(right, shell(tmp_path, right), "admin_port")).status == "ok"


async def test_port_taken_by_another_program(emulator, tmp_path):
    port = int(emulator.url.rsplit(":", 1)[1])
    settings = settings_for(tmp_path, emulator.url, listen=f"127.0.0.1:{port}",
                            admin_listen=f"127.0.0.1:{port}")
    results = {r.check: r for r in await diagnose(settings, shell(tmp_path, settings))}
    for name, key in (("proxy_port", "listen"), ("admin_port", "admin_listen")):
        result = results[name]
        assert result.status == "fail"
        assert result.detail.startswith(f"port {port} is taken by another program (")
        assert f"set {key} = HOST:PORT" in result.fix


async def test_port_taken_by_something_that_is_not_http(tmp_path, nursery, dead_port):
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.aclose()

    nursery.start_soon(trio.serve_listeners, hang_up, listeners)
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}",
                            listen=f"127.0.0.1:{port}")
    result = await check(settings, shell(tmp_path, settings), "proxy_port")
    assert result.status == "fail" and "does not answer HTTP" in result.detail


def test_an_address_that_is_not_this_machines_cannot_be_bound():
    assert doctor_host._bind_problem("127.0.0.1", free_port()) is None
    assert doctor_host._bind_problem("192.0.2.1", free_port())  # TEST-NET-1, never local


# -- 4. the state directory --------------------------------------------------------------------

async def test_state_dir_writable_existing_and_missing(tmp_path, dead_port):
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}")
    (tmp_path / "state").mkdir()
    assert doctor_host.check_state_dir(settings) == Result(
        "state_dir", "ok", f"{tmp_path / 'state'} is writable")
    assert not [p for p in (tmp_path / "state").iterdir()]  # the probe file is gone
    settings.state_dir = str(tmp_path / "new" / "state")
    result = doctor_host.check_state_dir(settings)
    assert result.status == "ok" and f"creates it in {tmp_path}," in result.detail
    assert not (tmp_path / "new").exists()  # the doctor creates nothing


async def test_state_dir_under_a_regular_file_fails(tmp_path, dead_port):
    (tmp_path / "file").write_text("not a directory")
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}",
                            state_dir=str(tmp_path / "file" / "lmsd"))
    result = await check(settings, shell(tmp_path, settings), "state_dir")
    assert result.status == "fail"
    assert result.detail == (f"{tmp_path / 'file'} is not a directory, so lmsd cannot create "
                             f"{tmp_path / 'file' / 'lmsd'}")
    assert "LMSD_STATE_DIR" in result.fix


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
async def test_state_dir_read_only_fails(tmp_path, dead_port):
    (tmp_path / "ro").mkdir(mode=0o500)
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}",
                            state_dir=str(tmp_path / "ro"))
    result = doctor_host.check_state_dir(settings)
    assert result.status == "fail" and "is not writable" in result.detail


# -- 5. the service ----------------------------------------------------------------------------

SYSTEMCTL = """echo "$@" >> "$0.calls"
case "$2" in
  is-enabled) {enabled};;
  is-active) {active};;
esac
"""


@pytest.mark.parametrize(("enabled", "active", "status", "detail", "fix"), [
    ("echo enabled", "echo active", "ok", "lmsd.service is enabled and active", None),
    ("echo 'Failed to get unit file state for lmsd.service: No such file or directory' >&2;"
     " exit 1", "exit 9", "warn", "lmsd.service is not installed", "`lmsd service install`"),
    ("echo not-found; exit 4", "exit 9", "warn", "lmsd.service is not installed",
     "`lmsd service install`"),
    ("echo enabled", "echo failed; exit 3", "fail", "lmsd.service is enabled but failed",
     "systemctl --user restart lmsd"),
    ("echo disabled; exit 1", "echo inactive; exit 3", "fail",
     "lmsd.service is disabled but inactive", "systemctl --user restart lmsd"),
    ("echo disabled; exit 1", "echo active", "warn",
     "lmsd.service is running but not enabled", "systemctl --user enable lmsd"),
    ("echo enabled", "echo 'Failed to connect to bus: No medium found' >&2; exit 1", "warn",
     "no user service manager here (Failed to connect to bus: No medium found)",
     "run `lmsd serve` under your own supervisor"),
])
async def test_systemd_service(tmp_path, dead_port, enabled, active, status, detail, fix):
    systemctl = script(tmp_path / "bin" / "systemctl",
                       SYSTEMCTL.format(enabled=enabled, active=active))
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}")
    result = await check(settings, shell(tmp_path, settings), "service", platform="linux")
    assert result.status == status
    assert result.detail.startswith(detail)
    assert (result.fix or "").startswith(fix or "")
    calls = Path(f"{systemctl}.calls").read_text().splitlines()
    assert calls[0] == "--user is-enabled lmsd.service"


async def test_no_systemctl(tmp_path, dead_port):
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}")
    result = await check(settings, shell(tmp_path, settings), "service", platform="linux")
    assert result == Result("service", "warn", "no service manager here (systemctl not found)",
                            "run `lmsd serve` under your own supervisor")


@pytest.mark.parametrize(("body", "plist", "status", "fix"), [
    ("echo 'state = running'", False, "ok", None),
    ("echo 'state = not running'", False, "fail", "launchctl kickstart -k gui/$UID/ai.lmsd"),
    ("echo 'Could not find service \"ai.lmsd\" in domain' >&2; exit 113", False, "warn",
     "`lmsd service install`"),
    ("echo 'Could not find service \"ai.lmsd\" in domain' >&2; exit 113", True, "fail",
     "launchctl bootstrap gui/$UID"),
])
async def test_launchd_service(tmp_path, dead_port, body, plist, status, fix):
    script(tmp_path / "bin" / "launchctl", f'[ "$2" = "gui/{os.getuid()}/ai.lmsd" ] || exit 64\n'
           + body + "\n")
    if plist:
        agents = tmp_path / "home" / "Library" / "LaunchAgents"
        agents.mkdir(parents=True)
        (agents / "ai.lmsd.plist").write_text("<plist/>")
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}")
    result = await check(settings, shell(tmp_path, settings), "service", platform="darwin")
    assert result.status == status
    assert (result.fix or "").startswith(fix or "")


# -- 6. the Claude Code environment ------------------------------------------------------------

def base_url(settings: Settings, value: str | None) -> Result:
    env = {"ANTHROPIC_BASE_URL": value} if value is not None else {}
    return doctor_shell.check_base_url(settings, env)


def test_base_url_equivalent_forms_point_at_lmsd(tmp_path):
    settings = load_settings({"listen": "127.0.0.1:19234"}, {})
    for value in ("http://127.0.0.1:19234", "http://localhost:19234/", "http://[::1]:19234",
                  "http://127.0.0.1:19234/session/abc"):
        assert base_url(settings, value).status == "ok", value
    anywhere = load_settings({"listen": "0.0.0.0:19234"}, {})
    assert base_url(anywhere, "http://127.0.0.1:19234").status == "ok"


def test_base_url_unset_or_elsewhere(tmp_path):
    settings = load_settings({"listen": "127.0.0.1:19234"}, {})
    unset = base_url(settings, None)
    assert unset.status == "warn" and "not set" in unset.detail
    assert unset.fix == 'eval "$(lmsd env)"'
    for value in ("https://api.anthropic.com", "http://127.0.0.1:1234",
                  "https://127.0.0.1:19234", "http://10.1.2.3:19234"):
        result = base_url(settings, value)
        assert result.status == "fail", value
        assert result.detail == (f"ANTHROPIC_BASE_URL={value} does not point at lmsd "
                                 "(http://127.0.0.1:19234)")
        assert result.fix == 'eval "$(lmsd env)"'
    v1 = base_url(settings, "http://127.0.0.1:19234/v1")
    assert v1.status == "fail" and "ends in /v1" in v1.detail
    assert v1.fix == "export ANTHROPIC_BASE_URL=http://127.0.0.1:19234"


async def test_claude_env_through_diagnose(tmp_path, dead_port):
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}")
    good = {r.check: r for r in await diagnose(settings, shell(tmp_path, settings))}
    assert [good[n].status for n in ("base_url", "attribution_header", "auth_token")] == [
        "ok", "ok", "ok"]
    bare = shell(tmp_path, settings, ANTHROPIC_BASE_URL=None, ANTHROPIC_AUTH_TOKEN=None,
                 CLAUDE_CODE_ATTRIBUTION_HEADER=None)
    results = {r.check: r for r in await diagnose(settings, bare)}
    assert results["base_url"].status == "warn"
    header = results["attribution_header"]
    assert header.status == "warn" and "strips the billing header anyway" in header.detail
    assert header.fix.startswith("export CLAUDE_CODE_ATTRIBUTION_HEADER=0")
    auth = results["auth_token"]
    assert auth.status == "warn" and "asks you to log in" in auth.detail
    elsewhere = shell(tmp_path, settings, ANTHROPIC_BASE_URL="https://api.anthropic.com",
                      ANTHROPIC_AUTH_TOKEN=None, ANTHROPIC_API_KEY="sk-ant-x")
    results = {r.check: r for r in await diagnose(settings, elsewhere)}
    assert results["base_url"].status == "fail"
    assert results["auth_token"] == Result("auth_token", "ok", "ANTHROPIC_API_KEY is set "
                                           "(lmsd does not check its value)")


def test_attribution_header_without_stripping_is_a_cache_problem():
    settings = load_settings({"strip_billing_header": "false"}, {})
    result = doctor_shell.check_attribution(settings, {"CLAUDE_CODE_ATTRIBUTION_HEADER": "1"})
    assert result.status == "warn"
    assert "is '1', not 0 and strip_billing_header = false" in result.detail
    assert "defeats LM Studio's prefix cache" in result.detail


# -- 7. Claude Code ----------------------------------------------------------------------------

async def test_claude_found(tmp_path):
    claude = script(tmp_path / "bin" / "claude",
                    '[ "$1" = --version ] && echo "2.1.329 (Claude Code)"\n')
    result = await doctor_shell.check_claude({"PATH": str(tmp_path / "bin")})
    assert result == Result("claude", "ok", f"2.1.329 (Claude Code) at {claude}")


async def test_claude_missing(tmp_path):
    result = await doctor_shell.check_claude({"PATH": str(tmp_path / "bin")})
    assert result.status == "warn" and result.detail == "claude not found on PATH"
    assert "npm install -g @anthropic-ai/claude-code" in result.fix


async def test_claude_failing(tmp_path):
    script(tmp_path / "bin" / "claude", "echo 'Error: Cannot find module cli.js' >&2; exit 3\n")
    result = await doctor_shell.check_claude({"PATH": str(tmp_path / "bin")})
    assert result.status == "warn"
    assert result.detail == "`claude --version` failed (exit 3): Error: Cannot find module cli.js"


async def test_claude_hanging_is_killed(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor_shell, "CLAUDE_TIMEOUT", 0.5)
    sleep = shutil.which("sleep", path=os.defpath) or "/bin/sleep"
    script(tmp_path / "bin" / "claude", f"exec {sleep} 30\n")
    with trio.fail_after(5):
        result = await doctor_shell.check_claude({"PATH": str(tmp_path / "bin")})
    assert result == Result("claude", "warn", "`claude --version` did not finish within 0.5 s; "
                            "killed it",
                            f"run `{tmp_path / 'bin' / 'claude'} --version` to see why")


# -- lmsd doctor: output and exit status -------------------------------------------------------

def doctor_args(**kw: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    doctor.add_parser(parser.add_subparsers(dest="command"))
    argv = ["doctor"] + [a for k, v in kw.items() if v is not None
                         for a in (["--" + k.replace("_", "-")] + ([] if v is True else [v]))]
    return parser.parse_args(argv)


def prepare_shell(tmp_path: Path, monkeypatch, settings: Settings) -> None:
    script(tmp_path / "bin" / "claude", 'echo "2.1.329 (Claude Code)"\n')
    for key, value in shell(tmp_path, settings).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CODEX_HOME", raising=False)  # HOME has no Codex config: skipped
    monkeypatch.setenv("LMSD_STATE_DIR", str(tmp_path / "state"))


async def test_run_prints_one_line_per_check_and_exits_0_on_warnings(emulator, tmp_path,
                                                                     monkeypatch, capsys):
    settings = settings_for(tmp_path, emulator.url)
    prepare_shell(tmp_path, monkeypatch, settings)
    args = doctor_args(upstream=emulator.url, listen=settings.listen,
                       admin_listen=settings.admin_listen)
    code = await trio.to_thread.run_sync(doctor.run, args)
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert len(lines) == 15
    assert lines[0].startswith("ok   lmstudio ") and emulator.url in lines[0]
    service = next(line for line in lines if " service " in line)
    assert service.startswith("warn service ") and "; fix: " in service  # no systemctl
    assert all("; fix: " not in line for line in lines if line.startswith("ok "))


async def test_run_exits_1_when_a_check_fails(tmp_path, monkeypatch, capsys, dead_port):
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}")
    prepare_shell(tmp_path, monkeypatch, settings)
    monkeypatch.setenv("LMSD_UPSTREAM", f"http://127.0.0.1:{dead_port}")  # env works too
    args = doctor_args(listen=settings.listen, admin_listen=settings.admin_listen)
    code = await trio.to_thread.run_sync(doctor.run, args)
    out = capsys.readouterr().out
    assert code == 1
    assert out.splitlines()[0].startswith("FAIL lmstudio ")
    assert "; fix: start the server there (LM Studio: `lms server start`)" in out


async def test_run_json(tmp_path, monkeypatch, capsys, dead_port):
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}")
    prepare_shell(tmp_path, monkeypatch, settings)
    config = tmp_path / "lmsd.toml"
    config.write_text(f'upstream = "http://127.0.0.1:{dead_port}"\n'
                      f'listen = "{settings.listen}"\nadmin_listen = "{settings.admin_listen}"\n')
    code = await trio.to_thread.run_sync(doctor.run, doctor_args(config=str(config),
                                                                 json=True))
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert [set(entry) for entry in data] == [{"check", "status", "detail", "fix"}] * 15
    by_check = {entry["check"]: entry for entry in data}
    assert by_check["lmstudio"]["status"] == "fail"
    assert by_check["model"]["status"] == "skip"
    assert by_check["proxy_port"] == {"check": "proxy_port", "status": "ok",
                                      "detail": f"{settings.listen} is free", "fix": None}


def test_run_reports_a_config_error(tmp_path, capsys):
    code = doctor.run(doctor_args(config=str(tmp_path / "missing.toml")))
    assert code == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL config ") and "not found" in out


def test_marks_on_a_utf8_terminal():
    results = [Result("a", "ok", "fine"), Result("bb", "warn", "hmm", "do x"),
               Result("c", "fail", "broken", "do y"), Result("d", "skip", "later")]
    assert doctor.format_results(results, fancy=True).splitlines() == [
        "✓ a   fine", "! bb  hmm; fix: do x", "✗ c   broken; fix: do y", "- d   later"]
    assert doctor.format_results(results).splitlines() == [
        "ok   a   fine", "warn bb  hmm; fix: do x", "FAIL c   broken; fix: do y",
        "skip d   later"]


async def test_every_upstream_is_checked_by_name(emulator, tmp_path, dead_port):
    from lmsd.config import UpstreamConfig

    settings = settings_for(tmp_path, emulator.url)
    settings.upstreams = [UpstreamConfig(emulator.url, name="desk"),
                          UpstreamConfig(f"http://127.0.0.1:{dead_port}", name="lap",
                                         kind="chat")]
    results = await diagnose(settings, shell(tmp_path, settings, **claude_code_env(32768)))
    found = {r.check: r for r in results}
    assert [c for c in found if "[" in c] == [
        "lmstudio [desk]", "api [desk]", "model [desk]", "cache [desk]", "lmstudio [lap]",
        "api [lap]", "model [lap]", "cache [lap]"]
    assert found["lmstudio [desk]"].status == "ok" and found["model [desk]"].status == "ok"
    assert found["lmstudio [lap]"].status == "fail"
    assert f"127.0.0.1:{dead_port}" in found["lmstudio [lap]"].detail
    assert found["api [lap]"].detail == "chat (configured: upstream_api)"
    assert found["claude_context"].status == "ok"  # the context of the one that answers
