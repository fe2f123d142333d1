"""`lmsd doctor`'s Claude Code check against the real CLI (2.1.337)."""

from __future__ import annotations

import os

import pytest

from lmsd.ops.doctor import shell as doctor_shell
from tests.support.claude_cli import find_claude


@pytest.mark.cli
async def test_the_real_claude_code_version(tmp_path):
    real = find_claude()
    if real is None:
        pytest.skip("the Claude Code CLI is not installed (.ci/run installs it)")
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "claude").symlink_to(real)
    env = {**os.environ, "PATH": f"{tmp_path / 'real'}{os.pathsep}/usr/bin:/bin"}
    result = await doctor_shell.check_claude(env)
    assert result.status == "ok", result
    assert result.detail.startswith("2.1.337 (Claude Code) at ")
