"""lmsd under a real systemd user manager (``systemd-run --user``): READY=1 makes the
unit active, WATCHDOG=1 keeps it alive past WatchdogSec, and a stop exits cleanly.

Skips, with the reason found, where no user manager answers (containers, CI runners).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from lmsd.ops.service.actions import lmsd_command
from tests.support.processes import free_port

MANAGER_UP = {"running", "degraded", "starting", "initializing"}
WATCHDOG_S = 10


def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemctl", "--user", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def no_user_manager() -> str | None:
    """Why no systemd user manager can run units here, or None when one can."""
    for tool in ("systemctl", "systemd-run"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH"
    done = systemctl("is-system-running")
    state = done.stdout.strip()
    if state in MANAGER_UP:
        return None
    comm = Path("/proc/1/comm")
    pid1 = comm.read_text().strip() if comm.exists() else "unknown"
    err = done.stderr.strip().splitlines()
    return (f"no systemd user manager: `systemctl --user is-system-running` printed "
            f"{state or '(nothing)'!r} (exit {done.returncode})"
            f"{': ' + err[-1] if err else ''}; PID 1 is {pid1!r}")


def show(unit: str) -> dict[str, str]:
    done = systemctl("show", unit, "-p",
                     "LoadState,ActiveState,SubState,Result,MainPID,NRestarts,StatusText,"
                     "ExecMainStatus")
    return dict(line.partition("=")[::2] for line in done.stdout.splitlines() if "=" in line)


def wait_for(unit: str, states: set[str], limit: float = 30) -> dict[str, str]:
    deadline = time.monotonic() + limit
    while True:
        now = show(unit)
        if now.get("ActiveState") in states or time.monotonic() > deadline:
            return now
        time.sleep(0.2)


def test_notify_watchdog_and_clean_stop_under_systemd_run(tmp_path):
    reason = no_user_manager()
    if reason:
        pytest.skip(reason)
    unit = f"lmsd-test-{secrets.token_hex(4)}"
    listen, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    argv = ["systemd-run", "--user", "--unit", unit, "-p", "Type=notify",
            "-p", f"WatchdogSec={WATCHDOG_S}", *lmsd_command(), "serve", "--listen", listen,
            "--admin-listen", admin, "--upstream", "http://127.0.0.1:9",
            "--state-dir", str(tmp_path / "state")]
    try:
        started = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                                 check=False)
        assert started.returncode == 0, started.stderr
        running = wait_for(unit, {"active", "failed"})
        assert running["ActiveState"] == "active", running
        assert running["StatusText"].startswith("serving on"), running  # our STATUS= line
        assert httpx.get(f"http://{admin}/healthz", timeout=5).status_code == 200

        time.sleep(WATCHDOG_S + 2)  # without WATCHDOG=1 systemd would kill it by now
        later = show(unit)
        assert later["ActiveState"] == "active", later
        assert (later["MainPID"], later["NRestarts"]) == (running["MainPID"], "0"), later

        stopped = systemctl("stop", unit)
        assert stopped.returncode == 0, stopped.stderr
        after = show(unit)  # a clean exit leaves nothing behind, a failure stays "failed"
        assert after.get("ActiveState") == "inactive", after
        assert after.get("Result") in ("success", ""), after
        assert after.get("ExecMainStatus") in ("0", "", None), after
    finally:
        systemctl("stop", unit)
        systemctl("reset-failed", unit)
