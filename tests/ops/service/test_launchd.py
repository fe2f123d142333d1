"""``lmsd service install|uninstall|status`` under launchd, driven through a fake
``launchctl``: idempotent installs, failures as one line."""

from __future__ import annotations

import plistlib
import shutil

from lmsd.ops.service import actions as service_actions
from tests.ops.service.fakes import (
    TARGET,
    UID,
    dead_address,
    lmsd_service,
)

# -- launchd through a fake launchctl -------------------------------------------------------


def test_launchd_install_reinstall_uninstall(fakes, home, capsys):
    path = home / "Library" / "LaunchAgents" / "ai.lmsd.plist"
    logs = home / "Library" / "Logs" / "lmsd"
    probe = ["launchctl", "print", TARGET]
    bootstrap = ["launchctl", "bootstrap", f"gui/{UID}", str(path)]
    bootout, kickstart = ["launchctl", "bootout", TARGET], ["launchctl", "kickstart", TARGET]

    assert lmsd_service("install", "--manager", "launchd") == 0
    assert fakes.calls() == [probe, bootstrap, kickstart]
    data = plistlib.loads(path.read_bytes())
    assert data["ProgramArguments"] == [*service_actions.lmsd_command(), "serve"]
    assert logs.is_dir()
    assert capsys.readouterr().out.splitlines()[:4] == [
        f"wrote {path}", f"created {logs}", f"ran launchctl bootstrap gui/{UID} {path}",
        f"ran launchctl kickstart {TARGET}"]

    assert lmsd_service("install", "--manager", "launchd") == 0
    assert fakes.calls() == [probe, kickstart]
    assert capsys.readouterr().out.startswith(f"unchanged {path}\n")

    path.write_bytes(path.read_bytes().replace(b"Background", b"Standard"))
    assert lmsd_service("install", "--manager", "launchd") == 0
    assert fakes.calls() == [probe, bootout, probe, bootstrap, kickstart]  # waits it out
    assert plistlib.loads(path.read_bytes())["ProcessType"] == "Background"
    capsys.readouterr()

    assert lmsd_service("uninstall", "--manager", "launchd") == 0
    assert fakes.calls() == [probe, bootout]
    assert not path.exists() and fakes.state["loaded"] is False
    assert capsys.readouterr().out == f"ran launchctl bootout {TARGET}\nremoved {path}\n"

    assert lmsd_service("uninstall", "--manager", "launchd") == 0
    assert fakes.calls() == [probe]
    assert capsys.readouterr().out == f"not installed: {path} does not exist\n"


def test_launchd_status(fakes, home, capsys, healthz):
    port = dead_address()
    assert lmsd_service("status", "--manager", "launchd", "--admin-listen", port) == 3
    path = home / "Library" / "LaunchAgents" / "ai.lmsd.plist"
    out = capsys.readouterr().out
    assert out.startswith(f"ai.lmsd: not loaded ({path} does not exist)\n"
                          f"daemon: not answering at http://{port} (")
    assert lmsd_service("install", "--manager", "launchd") == 0
    capsys.readouterr()
    assert lmsd_service("status", "--manager", "launchd", "--admin-listen", healthz) == 0
    assert capsys.readouterr().out == (
        "ai.lmsd: running, pid 4242, last exit code (never exited)\n"
        f"daemon: answering at http://{healthz} (lmsd 9.9.9)\n")


def test_launchctl_failure_and_absence(fakes, home, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", "bootstrap")
    assert lmsd_service("install", "--manager", "launchd") == 1
    assert capsys.readouterr().err == (
        f"lmsd: `launchctl bootstrap gui/{UID} {home}/Library/LaunchAgents/ai.lmsd.plist` "
        "failed (exit 1): Failed to enable unit: boom\n")
    shutil.rmtree(home / "Library")
    fakes.remove("launchctl")
    assert lmsd_service("install", "--manager", "launchd") == 1
    assert capsys.readouterr().err == (
        "lmsd: launchd is not available here (no launchctl on PATH); run `lmsd serve` under "
        "your own supervisor\n")
    assert list(home.iterdir()) == []
