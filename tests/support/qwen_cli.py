"""Run the real Qwen Code CLI (``qwen``, npm ``@qwen-code/qwen-code``) headless against an
OpenAI Chat Completions base URL, under trio.

Qwen Code speaks ``/v1/chat/completions`` with function tools and streaming, so it is the
chat-completions coding agent lmsd's chat front is tested with. The CLI is found via
``LMSD_QWEN_BIN``, else the copy ``.ci/run`` installs into ``~/.cache/lmsd-ci/npm``
(``$LMSD_CI_CACHE``), else ``qwen`` on ``PATH``; a test skips without it unless
``LMSD_REQUIRE_QWEN=1`` (set by CI).

Each run gets a fake ``HOME`` whose ``.qwen/settings.json`` turns off the update check,
usage statistics and telemetry; the proxy variables point at a dead port so that nothing
but the provider (on loopback, reached directly) could be reached.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trio

from tests.support.ci_cache import cached
from tests.support.processes import kill_tree, read_back, require_cli

REPO = Path(__file__).resolve().parents[2]
CI_QWEN = cached("npm/qwen-code-*/node_modules/.bin/qwen",
                 REPO / ".ci" / ".qwen-code" / "node_modules" / ".bin" / "qwen")
QWEN_VERSION = "0.24.4"
MODEL = "qwen/qwen3-coder-30b"  # the emulator's loaded model
SETTINGS = {"general": {"disableAutoUpdate": True, "disableUpdateNag": True},
            "privacy": {"usageStatisticsEnabled": False}, "telemetry": {"enabled": False}}


def _env(qwen: str, home: Path) -> dict[str, str]:
    dirs = [str(Path(qwen).parent)]
    if node := shutil.which("node"):
        dirs.append(str(Path(node).parent))
    dirs += ["/usr/local/bin", "/usr/bin", "/bin"]
    dead = "http://127.0.0.1:9"
    return {"PATH": ":".join(dict.fromkeys(dirs)), "TERM": "dumb", "LANG": "C.UTF-8",
            "HOME": str(home), "TMPDIR": str(home / "tmp"), "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost", "HTTPS_PROXY": dead, "HTTP_PROXY": dead,
            "https_proxy": dead, "http_proxy": dead, "QWEN_CODE_SUPPRESS_YOLO_WARNING": "1"}


@functools.cache
def qwen_version(path: str) -> str | None:
    with tempfile.TemporaryDirectory() as home:
        try:
            done = subprocess.run([path, "--version"], stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=60, check=False,
                                  env=_env(path, Path(home)))
        except (OSError, subprocess.TimeoutExpired):
            return None
    out = done.stdout.decode(errors="replace").strip()
    return out if done.returncode == 0 and out else None


def find_qwen() -> str | None:
    env = os.environ.get("LMSD_QWEN_BIN")
    candidates = [shutil.which(env) or env] if env else [str(CI_QWEN), shutil.which("qwen")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and qwen_version(candidate):
            return str(Path(candidate).absolute())
    return None


def require_qwen() -> str:
    """:func:`find_qwen` or skip the test (fail it when ``LMSD_REQUIRE_QWEN=1``)."""
    return require_cli(find_qwen(), name="qwen", env="LMSD_QWEN_BIN", require="LMSD_REQUIRE_QWEN")


@dataclass
class QwenRun:
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str

    def result(self) -> dict | None:
        """The ``result`` object of ``--output-format json``."""
        try:
            events = json.loads(self.stdout)
        except ValueError:
            return None
        events = events if isinstance(events, list) else [events]
        return next((e for e in events if e.get("type") == "result"), None)

    def explain(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout[-4000:]}\n--- stderr\n" \
               f"{self.stderr[-4000:]}"


async def run_qwen(base_url: str, prompt: str, *, home: Path, cwd: Path,
                   model: str = MODEL, timeout: float = 120) -> QwenRun:
    """``qwen --yolo --auth-type openai -o json PROMPT`` against ``<base_url>/v1``."""
    qwen = require_qwen()
    (home / ".qwen").mkdir(parents=True, exist_ok=True)
    (home / "tmp").mkdir(exist_ok=True)
    (home / ".qwen" / "settings.json").write_text(json.dumps(SETTINGS))
    env = {**_env(qwen, home), "OPENAI_API_KEY": "sk-test-lmsd-qwen",
           "OPENAI_BASE_URL": base_url.rstrip("/") + "/v1", "OPENAI_MODEL": model}
    args = [qwen, "--yolo", "--auth-type", "openai", "-m", model, "-o", "json",
            "--max-session-turns", "8", prompt]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        returncode = None
        with trio.move_on_after(timeout):
            proc = await trio.run_process(args, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=err, check=False, cwd=cwd, env=env,
                                          start_new_session=True, deliver_cancel=kill_tree)
            returncode = proc.returncode
        return QwenRun(returncode, read_back(out), read_back(err))
