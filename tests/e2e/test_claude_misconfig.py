"""The real Claude Code CLI (2.1.329) against an LM Studio that wants an API key lmsd lacks: the
fix is shown at once, with no retry."""

from __future__ import annotations

import pytest

from tests.support.upstream_key import KEY, NEEDS_KEY


@pytest.mark.cli
async def test_claude_code_shows_the_missing_key_at_once(start_lmsd, emulator, tmp_path):
    from tests.support.claude_cli import run_claude

    emulator.api_key = KEY
    server = await start_lmsd(emulator.url)
    run = await run_claude(server.url, "hi", home=tmp_path / "home", cwd=tmp_path)
    assert run.returncode == 1
    assert run.result is not None and run.result["is_error"] is True
    assert NEEDS_KEY in (run.text or ""), run.stdout
    rejected = [e for e in server.bus.recent if e["type"] == "request.rejected"]
    assert [(e["path"], e["status"]) for e in rejected] == [("/v1/messages", 403)]  # no retry


@pytest.mark.cli
async def test_claude_code_shows_a_down_upstream_as_not_reachable_at_once(start_lmsd,
                                                                          dead_port, tmp_path):
    """Issue 23: nothing listening at the upstream URL was "has no model loaded", a 503 that
    Claude Code retried for about three minutes. Now the reason, shown after one request."""
    from tests.support.claude_cli import run_claude

    url = f"http://127.0.0.1:{dead_port}"
    server = await start_lmsd(url, poll_interval="0.05")
    run = await run_claude(server.url, "hi", home=tmp_path / "home", cwd=tmp_path,
                           timeout=60)
    assert run.returncode == 1
    assert run.result is not None and run.result["is_error"] is True
    text = run.text or ""
    assert f"is not reachable at {url}" in text, run.stdout
    assert "no model loaded" not in text
    rejected = [e for e in server.bus.recent if e["type"] == "request.rejected"]
    assert [(e["path"], e["status"]) for e in rejected] == [("/v1/messages", 503)]  # no retry
