"""Run the real Codex CLI (``codex exec --json``) against a base URL, under trio.

The CLI is found via ``LMSD_CODEX_BIN``, else the copy ``.ci/run`` installs into
``~/.cache/lmsd-ci/npm`` (``$LMSD_CI_CACHE``), else ``codex`` on ``PATH``. Tests call
:func:`require_codex` (or just :func:`run_codex`), which skips when the CLI is missing
unless ``LMSD_REQUIRE_CODEX=1`` (set by CI), in which case it fails.

Each run gets a fresh ``CODEX_HOME/config.toml`` whose only provider points at the server
under test (``wire_api = "responses"``), a fake ``HOME``, and the flags that stop every
other connection Codex 0.171 tries (plugin sync, apps, analytics: ``QUIET_ARGS``). As a
guard, the proxy variables point at a local sink that records any connection that still
tries to leave (:attr:`CodexRun.egress`); the provider itself is reached directly.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from tests.support.ci_cache import cached
from tests.support.processes import kill_tree, read_back, require_cli

REPO = Path(__file__).resolve().parents[2]
CI_CODEX = cached("npm/codex-*/node_modules/.bin/codex",
                  REPO / ".ci" / ".codex" / "node_modules" / ".bin" / "codex")
CODEX_VERSION = "0.171.0"  # what the tests were written against (the capture's version)
TEST_API_KEY = "sk-test-lmsd-codex"
PROVIDER = "lmsd_test"
API_KEY_ENV = "LMSD_TEST_API_KEY"
MODEL = "qwen/qwen3-coder-30b"  # the emulator's loaded model

# Zero egress besides the provider (codex-traffic README, 0.169/resp-quiet).
QUIET_ARGS = ("--disable", "plugins", "--disable", "apps", "-c", "analytics.enabled=false")
# Only `function` tools, which LM Studio accepts (0.171/resp-min-tools): no web_search,
# no multi_agent_v1 namespace, no goal tools.
FUNCTION_TOOLS_ONLY = ("-c", "web_search=disabled", "--disable", "multi_agent",
                       "--disable", "goals")


def _executable(path: str | os.PathLike[str] | None) -> str | None:
    """``path`` as an absolute string if it is an executable file."""
    if not path:
        return None
    p = Path(path)
    try:
        ok = p.is_file() and os.access(p, os.X_OK)
    except OSError:
        return None
    return str(p.absolute()) if ok else None


@functools.cache
def codex_version(path: str) -> str | None:
    """``codex --version`` ("codex-cli 0.171.0"), or None when the binary does not run.

    The npm launcher is a small node script that fails only at run time when its
    optional native package is missing, so existence alone proves nothing.
    """
    with tempfile.TemporaryDirectory() as home:
        try:
            done = subprocess.run(
                [path, "--version"], stdin=subprocess.DEVNULL, capture_output=True,
                timeout=60, check=False, env={**_base_env(path), "HOME": home, "CODEX_HOME": home},
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
    out = done.stdout.decode(errors="replace").strip()
    return out if done.returncode == 0 and out.startswith("codex-cli ") else None


def find_codex() -> str | None:
    """Path of a working Codex CLI, or None.

    ``LMSD_CODEX_BIN`` (a path or a command name) wins when set, even if it is broken,
    so a misconfigured CI does not silently pick another copy.
    """
    env = os.environ.get("LMSD_CODEX_BIN")
    candidates = [shutil.which(env) or env] if env else [CI_CODEX, shutil.which("codex")]
    for candidate in candidates:
        path = _executable(candidate)
        if path and codex_version(path):
            return path
    return None


def require_codex() -> str:
    """:func:`find_codex` or skip the test (fail it when ``LMSD_REQUIRE_CODEX=1``)."""
    return require_cli(find_codex(), name="codex", env="LMSD_CODEX_BIN",
                       require="LMSD_REQUIRE_CODEX")


@dataclass
class CodexRun:
    """Outcome of one ``codex exec --json`` run."""

    returncode: int
    stdout: str
    stderr: str
    events: list[dict[str, Any]]
    """The ``--json`` events (JSON lines of stdout), in order."""
    egress: list[str] = field(default_factory=list)
    """First request line of every connection that went to the proxy sink (should be none)."""

    def completed(self, kind: str) -> list[dict[str, Any]]:
        """The ``item.completed`` items of type ``kind`` (agent_message, command_execution...)."""
        return [e["item"] for e in self.events
                if e.get("type") == "item.completed" and e.get("item", {}).get("type") == kind]

    @property
    def thread_id(self) -> str | None:
        return next((e.get("thread_id") for e in self.events
                     if e.get("type") == "thread.started"), None)

    @property
    def agent_messages(self) -> list[str]:
        return [item.get("text", "") for item in self.completed("agent_message")]

    @property
    def message(self) -> str | None:
        """The last agent message (the final answer), if any."""
        return (self.agent_messages or [None])[-1]

    @property
    def commands(self) -> list[dict[str, Any]]:
        """Completed ``command_execution`` items: command, aggregated_output, exit_code."""
        return self.completed("command_execution")

    @property
    def errors(self) -> list[str]:
        """Messages of ``error`` events (retries included) and of ``turn.failed``."""
        out = [e.get("message", "") for e in self.events if e.get("type") == "error"]
        out += [(e.get("error") or {}).get("message", "") for e in self.events
                if e.get("type") == "turn.failed"]
        return out

    @property
    def warnings(self) -> list[str]:
        """``error`` items (not fatal; e.g. "Model metadata for `...` not found")."""
        return [item.get("message", "") for item in self.completed("error")]

    @property
    def turn_failed(self) -> bool:
        return any(e.get("type") == "turn.failed" for e in self.events)

    @property
    def usage(self) -> dict[str, Any] | None:
        """The last ``turn.completed`` usage."""
        done = [e for e in self.events if e.get("type") == "turn.completed"]
        return done[-1].get("usage") if done else None

    def explain(self) -> str:
        """stdout and stderr, for assertion messages."""
        return f"rc={self.returncode}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


class CodexTimeout(TimeoutError):
    """The CLI did not exit in time; it was killed. ``run`` holds the partial output."""

    def __init__(self, timeout: float, run: CodexRun) -> None:
        super().__init__(
            f"codex did not exit within {timeout}s (killed)\n"
            f"--- stdout ---\n{run.stdout[-4000:]}\n--- stderr ---\n{run.stderr[-4000:]}"
        )
        self.run = run


def _parse_events(stdout: str) -> list[dict[str, Any]]:
    events = []
    for line in stdout.splitlines():
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict):
                events.append(obj)
    return events


def _toml_value(value: Any) -> str:
    """A TOML scalar: JSON's string escapes, numbers and booleans are valid TOML."""
    if not isinstance(value, str | int | float | bool):
        raise TypeError(f"config values must be str, int, float or bool, not {value!r}")
    return json.dumps(value)


def write_config(codex_home: Path, base_url: str, *, model: str = MODEL,
                 config: Mapping[str, Any] | None = None,
                 provider: Mapping[str, Any] | None = None) -> Path:
    """``CODEX_HOME/config.toml``: ``model`` on one provider at ``<base_url>/v1``.

    ``config`` adds top-level keys (e.g. ``model_context_window``), ``provider`` keys of
    the provider block (e.g. ``stream_max_retries``).
    """
    top = {"model": model, "model_provider": PROVIDER, "approval_policy": "never",
           "sandbox_mode": "danger-full-access", **(config or {})}
    block = {"name": "lmsd test", "base_url": base_url.rstrip("/") + "/v1",
             "wire_api": "responses", "env_key": API_KEY_ENV, **(provider or {})}
    lines = [f"{key} = {_toml_value(value)}" for key, value in top.items()]
    lines += ["", f"[model_providers.{PROVIDER}]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in block.items()]
    codex_home.mkdir(parents=True, exist_ok=True)
    path = codex_home / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _base_env(codex: str) -> dict[str, str]:
    """PATH with the CLI's directory and node's (the npm launcher is a node script)."""
    dirs = [str(Path(codex).parent)]
    node = shutil.which("node")
    if node:
        dirs.append(str(Path(node).parent))
    dirs += ["/usr/local/bin", "/usr/bin", "/bin"]
    return {"PATH": ":".join(dict.fromkeys(dirs)), "TERM": "dumb", "LANG": "C.UTF-8"}


async def _sink(seen: list[str], stream: trio.SocketStream) -> None:
    """Record the first line of a connection sent to the proxy, then hang up on it."""
    data = b""
    with trio.move_on_after(2), contextlib.suppress(trio.BrokenResourceError):
        data = await stream.receive_some(4096)
    seen.append(data.split(b"\r\n", 1)[0].decode("latin1") or "<no data>")
    await stream.aclose()


async def run_codex(
    base_url: str,
    prompt: str,
    *,
    home: Path,
    cwd: Path,
    codex_home: Path | None = None,
    model: str = MODEL,
    extra_args: Sequence[str] = (),
    config: Mapping[str, Any] | None = None,
    provider: Mapping[str, Any] | None = None,
    resume: bool = False,
    extra_env: Mapping[str, str | None] | None = None,
    timeout: float = 120,
) -> CodexRun:
    """Run ``codex exec --json ... [resume --last] [extra_args] PROMPT`` against ``base_url``.

    ``base_url`` is the server root on loopback (the provider gets ``<base_url>/v1``; any
    other host would go to the proxy sink). ``codex_home`` defaults to ``home/.codex``;
    reuse it with ``resume=True`` for a second user turn of the last thread (``exec resume
    --last``). ``extra_args`` are more ``-c``/``--disable``/... flags (e.g.
    :data:`FUNCTION_TOOLS_ONLY`); ``config``/``provider`` go to :func:`write_config`. The
    CLI gets a clean environment: ``HOME=home``, ``CODEX_HOME``, ``TMPDIR=home/tmp``, a
    fixed test API key, the proxy sink, then ``extra_env`` (a ``None`` value removes a
    variable). stdin is /dev/null. Skips/fails like :func:`require_codex` when there is no
    CLI; raises :class:`CodexTimeout` (after killing the CLI and its children) past
    ``timeout`` seconds.
    """
    codex = require_codex()
    codex_home = codex_home or home / ".codex"
    # A TMPDIR of its own: with CODEX_HOME under the temp dir (pytest's tmp_path is under
    # /tmp) Codex warns and skips creating its helper binaries, unlike a real install.
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    write_config(codex_home, base_url, model=model, config=config, provider=provider)
    args = [codex, "exec", "--json", "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox"]
    if resume:
        args += ["resume", "--last"]
    args += [*QUIET_ARGS, *extra_args, prompt]
    egress: list[str] = []
    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(
            functools.partial(trio.serve_tcp, functools.partial(_sink, egress), 0,
                              host="127.0.0.1"))
        proxy = f"http://127.0.0.1:{listener.socket.getsockname()[1]}"
        env = {**_base_env(codex), "HOME": str(home), "CODEX_HOME": str(codex_home),
               "TMPDIR": str(home / "tmp"), API_KEY_ENV: TEST_API_KEY,
               "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
            env[name] = env[name.lower()] = proxy
        for key, value in (extra_env or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        # Output goes to temp files rather than pipes so it survives a timeout kill.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            returncode: int | None = None
            with trio.move_on_after(timeout):
                proc = await trio.run_process(
                    args, stdin=subprocess.DEVNULL, stdout=out, stderr=err, check=False,
                    cwd=cwd, env=env, start_new_session=True, deliver_cancel=kill_tree,
                )
                returncode = proc.returncode
            stdout, stderr = read_back(out), read_back(err)
        nursery.cancel_scope.cancel()
    if returncode is None:
        run = CodexRun(-signal.SIGKILL, stdout, stderr, _parse_events(stdout), egress)
        raise CodexTimeout(timeout, run)
    return CodexRun(returncode, stdout, stderr, _parse_events(stdout), egress)
