"""``lmsd service install|uninstall|status``: run lmsd under systemd (user) or launchd.

- systemd (the default outside macOS): ``~/.config/systemd/user/lmsd.service``, managed
  with ``systemctl --user``.
- launchd (the default on macOS): ``~/Library/LaunchAgents/ai.lmsd.plist``, managed with
  ``launchctl`` in the ``gui/<uid>`` domain.

Files are rendered from ``systemd/lmsd.service`` and ``launchd/ai.lmsd.plist`` with the
absolute command of this lmsd. Installing again is harmless: an identical file is left
alone and every command is idempotent. ``--dry-run`` prints the file and the commands
and changes nothing. A failure is one line on stderr and exit status 1; when the service
manager is missing nothing is written.
"""

from __future__ import annotations

import argparse
import os
import plistlib
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from ..config import ConfigError, Settings, env_name, load_settings
from .client import Admin

MANAGERS = ("systemd", "launchd")
UNIT = "lmsd.service"
LABEL = "ai.lmsd"
PLACEHOLDER = "@LMSD_EXEC@"
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # lmsd/ops/service.py -> the checkout
COMMAND_TIMEOUT = 120.0  # `enable --now` waits for READY=1
HEALTH_TIMEOUT = 2.0
UNLOAD_TIMEOUT = 50.0  # the plist's ExitTimeOut (45 s) and a margin
NOT_RUNNING = 3  # status: installed or not, the daemon is not running and healthy
SYSTEM_PATH = ("/opt/homebrew/bin", "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin",
               "/sbin")


class ServiceError(Exception):
    """The one line printed on stderr before exiting 1."""


def unavailable(manager: str, why: str) -> ServiceError:
    return ServiceError(f"{manager} is not available here ({why}); run `lmsd serve` under "
                        f"your own supervisor")


# -- the command and the files --------------------------------------------------------------


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


def _systemd_arg(arg: str) -> str:
    """One ExecStart= word: ``%`` and ``$`` escaped, quoted when it has spaces or quotes."""
    text = arg.replace("%", "%%").replace("$", "$$")
    if text and not any(c.isspace() or c in "\"'\\;" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_systemd(command: Sequence[str]) -> str:
    return template("systemd/lmsd.service").replace(
        PLACEHOLDER, " ".join(_systemd_arg(a) for a in command))


def launchd_path(command: Sequence[str], home: Path) -> str:
    """PATH for the agent: lmsd's own bin directory, LM Studio's, then the usual ones."""
    dirs = [os.path.dirname(command[0]), str(home / ".lmstudio" / "bin"), *SYSTEM_PATH]
    return ":".join(dict.fromkeys(dirs))


def render_launchd(command: Sequence[str], home: Path) -> bytes:
    values = {"@LOG_DIR@": str(launchd_log_dir(home)), "@PATH@": launchd_path(command, home)}

    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [part for v in value for part in (command if v == PLACEHOLDER else [fill(v)])]
        if isinstance(value, str):
            for name, text in values.items():
                value = value.replace(name, text)
        return value

    data = fill(plistlib.loads(template("launchd/ai.lmsd.plist").encode()))
    return plistlib.dumps(data)


def systemd_unit_path(home: Path | None = None) -> Path:
    config = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(config) if os.path.isabs(config) else (home or Path.home()) / ".config"
    return base / "systemd" / "user" / UNIT


def launchd_plist_path(home: Path) -> Path:
    return home / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def launchd_log_dir(home: Path) -> Path:
    return home / "Library" / "Logs" / "lmsd"


# -- doing things, or saying what would be done ---------------------------------------------


def _last_line(text: str) -> str:
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
            why = _last_line(done.stderr) or _last_line(done.stdout) or "no message"
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


# -- systemd --------------------------------------------------------------------------------


def _systemctl(*args: str) -> list[str]:
    return ["systemctl", "--user", *args]


def systemd_show() -> dict[str, str]:
    """The unit's state from ``systemctl --user show``; raise when there is no manager."""
    if shutil.which("systemctl") is None:
        raise unavailable("systemd", "no systemctl on PATH")
    done = query(_systemctl("show", UNIT, "-p",
                            "LoadState,ActiveState,SubState,MainPID,UnitFileState"))
    if done.returncode:
        why = _last_line(done.stderr) or f"exit {done.returncode}"
        if "connect to bus" in why.lower():
            raise unavailable("systemd", f"systemctl --user cannot reach a user manager: {why}")
        raise unavailable("systemd", f"systemctl --user show failed: {why}")
    state: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            state[key.strip()] = value.strip()
    return state


def systemd_install(act: Actions, command: Sequence[str]) -> int:
    path = systemd_unit_path()
    content = render_systemd(command).encode()
    if not act.dry_run:
        systemd_show()
    existed = path.exists()
    changed = act.write(path, content)
    act.run(_systemctl("daemon-reload"))
    if changed and existed:
        act.run(_systemctl("try-restart", UNIT), " (restarts it if running)")
    act.run(_systemctl("enable", "--now", UNIT))
    if not act.dry_run:
        print(f"lmsd runs as {UNIT}; logs: journalctl --user -u lmsd -f")
    return 0


def systemd_uninstall(act: Actions) -> int:
    path = systemd_unit_path()
    if not act.dry_run:
        systemd_show()
    if not path.exists():
        print(f"not installed: {path} does not exist")
        return 0
    act.run(_systemctl("disable", "--now", UNIT))
    act.remove(path)
    act.run(_systemctl("daemon-reload"))
    return 0


def systemd_status(settings: Settings) -> int:
    state = systemd_show()
    if state.get("LoadState") in ("not-found", "", None):
        path = systemd_unit_path()
        print(f"{UNIT}: not loaded ({path} exists; run systemctl --user daemon-reload)"
              if path.exists() else f"{UNIT}: not installed ({path} does not exist)")
    else:
        pid = state.get("MainPID", "0")
        print(f"{UNIT}: {state.get('ActiveState', '?')} ({state.get('SubState', '?')})"
              f"{f', pid {pid}' if pid not in ('', '0') else ''}, "
              f"{state.get('UnitFileState') or 'no unit file'}")
    answering, line = health(settings)
    print(line)
    return 0 if answering and state.get("ActiveState") == "active" else NOT_RUNNING


# -- launchd --------------------------------------------------------------------------------


def _target() -> str:
    return f"gui/{os.getuid()}/{LABEL}"


def launchd_print() -> subprocess.CompletedProcess[str]:
    """``launchctl print`` of the agent (exit 0 when loaded); raise when there is no launchd."""
    if shutil.which("launchctl") is None:
        raise unavailable("launchd", "no launchctl on PATH")
    return query(["launchctl", "print", _target()])


def _bootout(act: Actions, loaded: bool | None) -> None:
    """Unload the agent (``loaded`` is None in a dry run: unknown) and wait until it is
    gone: launchd refuses to bootstrap a label whose process is still draining."""
    act.run(["launchctl", "bootout", _target()], " (if it is loaded)" if loaded is None else "")
    if act.dry_run:
        return
    deadline = time.monotonic() + UNLOAD_TIMEOUT
    while launchd_print().returncode == 0 and time.monotonic() < deadline:
        time.sleep(0.5)


def launchd_install(act: Actions, command: Sequence[str], home: Path) -> int:
    path = launchd_plist_path(home)
    content = render_launchd(command, home)
    loaded = None if act.dry_run else launchd_print().returncode == 0
    changed = act.write(path, content)
    act.mkdir(launchd_log_dir(home))
    if changed or not loaded:
        if loaded is not False:
            _bootout(act, loaded)
        act.run(["launchctl", "bootstrap", f"gui/{os.getuid()}", str(path)])
    act.run(["launchctl", "kickstart", _target()])  # starts it unless it runs already
    if not act.dry_run:
        print(f"lmsd runs as {_target()}; logs: {launchd_log_dir(home)}")
    return 0


def launchd_uninstall(act: Actions, home: Path) -> int:
    path = launchd_plist_path(home)
    loaded = None if act.dry_run else launchd_print().returncode == 0
    if loaded is False and not path.exists():
        print(f"not installed: {path} does not exist")
        return 0
    if loaded is not False:
        act.run(["launchctl", "bootout", _target()],
                " (if it is loaded)" if loaded is None else "")
    if path.exists():
        act.remove(path)
    return 0


def launchd_status(settings: Settings, home: Path) -> int:
    done = launchd_print()
    running = False
    if done.returncode:
        where = launchd_plist_path(home)
        print(f"{LABEL}: not loaded ({where} {'exists' if where.exists() else 'does not exist'})")
    else:
        fields: dict[str, str] = {}
        for line in done.stdout.splitlines():
            key, sep, value = line.strip().partition(" = ")
            if sep and key in ("state", "pid", "last exit code"):
                fields.setdefault(key, value.strip())
        running = fields.get("state") == "running"
        text = f"{LABEL}: {fields.get('state', '?')}"
        if "pid" in fields:
            text += f", pid {fields['pid']}"
        if "last exit code" in fields:
            text += f", last exit code {fields['last exit code']}"
        print(text)
    answering, line = health(settings)
    print(line)
    return 0 if answering and running else NOT_RUNNING


def status(manager: str, settings: Settings, home: Path) -> int:
    """``status``: the manager's view, then ``/healthz``. Without a service manager (a
    container, say) the daemon may still run under another supervisor: say so, and let
    ``/healthz`` decide between 0 and NOT_RUNNING."""
    try:
        if manager == "systemd":
            return systemd_status(settings)
        return launchd_status(settings, home)
    except ServiceError as exc:
        print(f"{UNIT if manager == 'systemd' else LABEL}: {exc}")
    answering, line = health(settings)
    print(line)
    return 0 if answering else NOT_RUNNING


# -- the command line -----------------------------------------------------------------------


def default_manager() -> str:
    return "launchd" if sys.platform == "darwin" else "systemd"


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``service`` subcommand."""
    parser = sub.add_parser(
        "service", help="install lmsd as a user service (systemd or launchd)",
        description="Install, remove or inspect lmsd as a service of the user's service "
        "manager: a systemd user unit (default on Linux) or a launchd agent (default on "
        "macOS). status exits 0 when the service runs and its /healthz answers, 3 when "
        "not; where there is no service manager (a container), 0 when /healthz answers.",
    )
    parser.add_argument("action", choices=("install", "uninstall", "status"),
                        help="install (or update) the service, uninstall it, or show its "
                        "status")
    parser.add_argument("--dry-run", dest="dry_run", action="store_true",
                        help="print the file and the commands, change nothing")
    parser.add_argument("--manager", choices=MANAGERS, default=None,
                        help=f"the service manager (default here: {default_manager()})")
    parser.add_argument("--admin-listen", dest="admin_listen", default=None,
                        metavar="HOST:PORT",
                        help=f"status: where the admin API is; env {env_name('admin_listen')}")
    parser.add_argument("--config", dest="config", default=None, metavar="FILE",
                        help=f"status: a TOML config file; env {env_name('config')}")


def run(args: argparse.Namespace) -> int:
    """Run ``lmsd service``; returns the exit status."""
    manager = getattr(args, "manager", None) or default_manager()
    action = args.action
    act = Actions(bool(getattr(args, "dry_run", False)))
    home = Path.home()
    try:
        if action == "status":
            flags = {k: getattr(args, k, None) for k in ("admin_listen", "config")}
            try:
                settings = load_settings(flags)
            except ConfigError as exc:
                print(f"lmsd: config error: {exc}", file=sys.stderr)
                return 2
            return status(manager, settings, home)
        if action == "install":
            command = lmsd_command()
            if manager == "systemd":
                return systemd_install(act, command)
            return launchd_install(act, command, home)
        if manager == "systemd":
            return systemd_uninstall(act)
        return launchd_uninstall(act, home)
    except ServiceError as exc:
        sys.stdout.flush()
        print(f"lmsd: {exc}", file=sys.stderr)
        return 1
