"""``lmsd service`` under systemd: ``~/.config/systemd/user/lmsd.service``, rendered from
``systemd/lmsd.service`` and managed with ``systemctl --user``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from ...config import Settings
from .actions import (
    NOT_RUNNING,
    PLACEHOLDER,
    Actions,
    health,
    last_line,
    query,
    template,
    unavailable,
)

UNIT = "lmsd.service"


def _systemd_arg(arg: str) -> str:
    """One ExecStart= word: ``%`` and ``$`` escaped, quoted when it has spaces or quotes."""
    text = arg.replace("%", "%%").replace("$", "$$")
    if text and not any(c.isspace() or c in "\"'\\;" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_systemd(command: Sequence[str]) -> str:
    return template("systemd/lmsd.service").replace(
        PLACEHOLDER, " ".join(_systemd_arg(a) for a in command))


def systemd_unit_path(home: Path | None = None) -> Path:
    config = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(config) if os.path.isabs(config) else (home or Path.home()) / ".config"
    return base / "systemd" / "user" / UNIT


def _systemctl(*args: str) -> list[str]:
    return ["systemctl", "--user", *args]


def systemd_show() -> dict[str, str]:
    """The unit's state from ``systemctl --user show``; raise when there is no manager."""
    if shutil.which("systemctl") is None:
        raise unavailable("systemd", "no systemctl on PATH")
    done = query(_systemctl("show", UNIT, "-p",
                            "LoadState,ActiveState,SubState,MainPID,UnitFileState"))
    if done.returncode:
        why = last_line(done.stderr) or f"exit {done.returncode}"
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

