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
