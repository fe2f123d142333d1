"""``lmsd doctor``'s checks of the calling shell: its Claude Code environment (base URL,
attribution header, token) and the installed Claude Code (found, missing, failing, hung)."""

from __future__ import annotations

import os
import shutil

import trio

from lmsd.config import Settings, load_settings
from lmsd.ops.doctor import diagnose
from lmsd.ops.doctor import shell as doctor_shell
from lmsd.ops.doctor.result import Result
from tests.ops.doctor.support import (  # isolated: autouse, no real LM Studio leaks in
    isolated,  # noqa: F401
    script,
    settings_for,
    shell,
)

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
