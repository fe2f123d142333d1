"""Run the real Claude Code CLI (``claude -p``) against a base URL, under trio.

The CLI is found via ``LMSD_CLAUDE_BIN``, else the copy ``.ci/run`` installs into
``~/.cache/lmsd-ci/npm`` (``$LMSD_CI_CACHE``), else ``claude`` on ``PATH``. Tests call
:func:`require_claude` (or just :func:`run_claude`), which skips when the CLI is missing
unless ``LMSD_REQUIRE_CLAUDE=1`` (set by CI), in which case it fails."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from tests.support.ci_cache import cached
from tests.support.processes import kill_tree, read_back, require_cli

REPO = Path(__file__).resolve().parents[2]
CI_CLAUDE = cached("npm/claude-code-*/node_modules/.bin/claude",
                   REPO / ".ci" / ".claude-code" / "node_modules" / ".bin" / "claude")
TEST_API_KEY = "sk-ant-test-lmsd"

# The npm wrapper ships a ~500-byte shell stub as bin/claude.exe; its postinstall replaces
# it with the native binary (hundreds of MB). Anything this small is not the real CLI.
_MIN_BINARY_BYTES = 1 << 20


def _usable(path: str | os.PathLike[str] | None) -> str | None:
    """``path`` as an absolute string if it is an executable, non-stub file."""
    if not path:
        return None
    p = Path(path)
    try:
        ok = p.is_file() and os.access(p, os.X_OK) and p.stat().st_size >= _MIN_BINARY_BYTES
    except OSError:
        return None
    return str(p.absolute()) if ok else None


def find_claude() -> str | None:
    """Path of a working Claude Code binary, or None.

    ``LMSD_CLAUDE_BIN`` (a path or a command name) wins when set, even if it is broken,
    so a misconfigured CI does not silently pick another copy.
    """
    env = os.environ.get("LMSD_CLAUDE_BIN")
    if env:
        return _usable(shutil.which(env) or env)
    return _usable(CI_CLAUDE) or _usable(shutil.which("claude"))


def require_claude() -> str:
    """:func:`find_claude` or skip the test (fail it when ``LMSD_REQUIRE_CLAUDE=1``)."""
    return require_cli(find_claude(), name="claude", env="LMSD_CLAUDE_BIN",
                       require="LMSD_REQUIRE_CLAUDE")


@dataclass
class ClaudeRun:
    """Outcome of one ``claude -p`` run."""

    returncode: int
    stdout: str
    stderr: str
    result: dict[str, Any] | None
    """Parsed ``--output-format json`` stdout (for stream-json: the final ``result`` line)."""

    @property
    def text(self) -> str | None:
        """The final answer text (``result["result"]``), if any."""
        value = (self.result or {}).get("result")
        return value if isinstance(value, str) else None


class ClaudeTimeout(TimeoutError):
    """The CLI did not exit in time; it was killed. ``run`` holds the partial output."""

    def __init__(self, timeout: float, run: ClaudeRun) -> None:
        super().__init__(
            f"claude did not exit within {timeout}s (killed)\n"
            f"--- stdout ---\n{run.stdout[-4000:]}\n--- stderr ---\n{run.stderr[-4000:]}"
        )
        self.run = run


def _parse_result(stdout: str) -> dict[str, Any] | None:
    """The JSON object on stdout, or the last ``"type": "result"`` line of stream-json."""
    with contextlib.suppress(ValueError):
        obj = json.loads(stdout)
        return obj if isinstance(obj, dict) else None
    for line in reversed(stdout.splitlines()):
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict) and obj.get("type") == "result":
                return obj
    return None


async def run_claude(
    base_url: str,
    prompt: str,
    *,
    home: Path,
    cwd: Path,
    allowed_tools: Sequence[str] = ("Bash",),
    extra_args: Sequence[str] = (),
    extra_env: Mapping[str, str | None] | None = None,
    timeout: float = 120,
) -> ClaudeRun:
    """Run ``claude -p PROMPT --allowedTools ... --output-format json`` against ``base_url``.

    The CLI gets a clean environment (as in the traffic captures): ``HOME=home``, a fixed
    test API key, nonessential traffic and telemetry disabled, then ``extra_env`` (a
    ``None`` value removes a variable, e.g. ``ANTHROPIC_API_KEY``). stdin is /dev/null.
    Skips/fails like :func:`require_claude` when there is no CLI; raises
    :class:`ClaudeTimeout` (after killing the CLI and its children) past ``timeout`` seconds.
    """
    claude = require_claude()
    home.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {
        "PATH": f"{Path(claude).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": TEST_API_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
    }
    for key, value in (extra_env or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    args = [
        claude,
        "-p",
        prompt,
        "--allowedTools",
        ",".join(allowed_tools),
        "--output-format",
        "json",
        *extra_args,
    ]
    # Output goes to temp files rather than pipes so it survives a timeout kill.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        returncode: int | None = None
        with trio.move_on_after(timeout):
            proc = await trio.run_process(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                check=False,
                cwd=cwd,
                env=env,
                start_new_session=True,
                deliver_cancel=kill_tree,
            )
            returncode = proc.returncode
        stdout, stderr = read_back(out), read_back(err)
    if returncode is None:
        raise ClaudeTimeout(timeout, ClaudeRun(-signal.SIGKILL, stdout, stderr, None))
    return ClaudeRun(returncode, stdout, stderr, _parse_result(stdout))
