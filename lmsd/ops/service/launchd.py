"""``lmsd service`` under launchd: ``~/Library/LaunchAgents/ai.lmsd.plist``, rendered from
``launchd/ai.lmsd.plist`` and managed with ``launchctl`` in the ``gui/<uid>`` domain."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...config import Settings
from .actions import NOT_RUNNING, PLACEHOLDER, Actions, health, query, template, unavailable

LABEL = "ai.lmsd"
UNLOAD_TIMEOUT = 50.0  # the plist's ExitTimeOut (45 s) and a margin
SYSTEM_PATH = ("/opt/homebrew/bin", "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin",
               "/sbin")


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


def launchd_plist_path(home: Path) -> Path:
    return home / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def launchd_log_dir(home: Path) -> Path:
    return home / "Library" / "Logs" / "lmsd"


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

