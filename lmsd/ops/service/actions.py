"""What ``lmsd service`` shares between systemd and launchd: the command that runs this
lmsd, the templates it is written into, and doing things (or, with ``--dry-run``, saying
what would be done)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from ...config import Settings, env_name
from ..client import Admin

PLACEHOLDER = "@LMSD_EXEC@"
SOURCE_ROOT = Path(__file__).resolve().parents[3]  # lmsd/ops/service/actions.py -> the checkout
COMMAND_TIMEOUT = 120.0  # `enable --now` waits for READY=1
HEALTH_TIMEOUT = 2.0
NOT_RUNNING = 3  # status: installed or not, the daemon is not running and healthy


class ServiceError(Exception):
    """The one line printed on stderr before exiting 1."""


def unavailable(manager: str, why: str) -> ServiceError:
    return ServiceError(f"{manager} is not available here ({why}); run `lmsd serve` under "
                        f"your own supervisor")


# -- the command and the templates ----------------------------------------------------------


def _same_install(script: str, python: str) -> bool:
    """Whether ``script`` is a console script run by the interpreter ``python``."""
    try:
        with open(script, "rb") as f:
            first = f.readline(4096).decode(errors="replace")
    except OSError:
        return False
    words = first[2:].split() if first.startswith("#!") else []
    return bool(words) and os.path.normpath(words[0]) == os.path.normpath(python)


def lmsd_command(executable: str | None = None) -> list[str]:
    """The absolute command that runs this lmsd: its console script, or ``python -m lmsd``.

    venvs, pipx and uv tools all put the script beside the interpreter; a script found on
    PATH counts only when its ``#!`` names this interpreter.
    """
    python = os.path.abspath(executable or sys.executable)
    beside = os.path.join(os.path.dirname(python), "lmsd")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return [beside]
    found = shutil.which("lmsd")
    if found and _same_install(found, python):
        return [os.path.abspath(found)]
    return [python, "-m", "lmsd"]


def template(relative: str) -> str:
    """A template from the source tree, or from ``<prefix>/share/lmsd`` (installed data)."""
    candidates = [SOURCE_ROOT / relative, Path(sys.prefix) / "share" / "lmsd" / relative]
    for path in candidates:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise ServiceError(f"the service template {relative} is not installed (looked in "
                       f"{', '.join(str(p) for p in candidates)})")


# -- doing things, or saying what would be done ---------------------------------------------


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def query(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a command that changes nothing; the caller judges its exit status."""
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, check=False,
                              timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"`{shlex.join(argv)}` failed: {exc}") from None


class Actions:
    """Writes, removes and runs, printing one line each; with ``dry_run``, only prints."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run

    def write(self, path: Path, content: bytes) -> bool:
        """Write ``path`` unless it already holds ``content``; True when it changed."""
        try:
            same = path.read_bytes() == content
        except OSError:
            same = False
        if self.dry_run:
            print(f"would write {path}{' (unchanged)' if same else ''}:")
            print(content.decode().rstrip("\n"))
            return not same
        if same:
            print(f"unchanged {path}")
            return False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".tmp")
            partial.write_bytes(content)
            os.replace(partial, path)
        except OSError as exc:
            raise ServiceError(f"cannot write {path}: {exc}") from None
        print(f"wrote {path}")
        return True

    def mkdir(self, path: Path) -> None:
        if path.is_dir():
            return
        if self.dry_run:
            print(f"would create {path}")
            return
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise ServiceError(f"cannot create {path}: {exc}") from None
        print(f"created {path}")

    def remove(self, path: Path) -> None:
        if self.dry_run:
            print(f"would remove {path}")
            return
        try:
            path.unlink()
        except OSError as exc:
            raise ServiceError(f"cannot remove {path}: {exc}") from None
        print(f"removed {path}")

    def run(self, argv: Sequence[str], note: str = "") -> None:
        line = shlex.join(argv)
        if self.dry_run:
            print(f"would run{note}: {line}")
            return
        done = query(argv)
        if done.returncode:
            why = last_line(done.stderr) or last_line(done.stdout) or "no message"
            raise ServiceError(f"`{line}` failed (exit {done.returncode}): {why}")
        print(f"ran {line}")


def health(settings: Settings) -> tuple[bool, str]:
    """``GET /healthz`` on the admin API: (answering, one line for people)."""
    admin = Admin.from_settings(settings)
    try:
        with httpx.Client(timeout=HEALTH_TIMEOUT, trust_env=False) as http:
            answer = http.get(admin.url + "/healthz", headers=admin.headers())
    except httpx.HTTPError as exc:
        return False, f"daemon: not answering at {admin.url} ({exc or type(exc).__name__})"
    if answer.status_code == 401:
        return True, (f"daemon: answering at {admin.url}, but it refused the admin token "
                      f"(set {env_name('admin_token')})")
    if answer.status_code != 200:
        return False, f"daemon: {admin.url}/healthz answered HTTP {answer.status_code}"
    try:
        version = answer.json().get("version", "?")
    except (ValueError, AttributeError):
        version = "?"
    return True, f"daemon: answering at {admin.url} (lmsd {version})"

