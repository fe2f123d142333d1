"""``lmsd service install|uninstall|status`` under systemd, driven through a fake
``systemctl``: idempotent installs, failures as one line, no user manager."""

from __future__ import annotations

import pytest

from lmsd.ops.service import actions as service_actions
from lmsd.ops.service import systemd as service_systemd
from tests.ops.service.fakes import (
    SHOW,
    dead_address,
    lmsd_service,
)

# -- systemd through a fake systemctl -------------------------------------------------------


def test_systemd_install_reinstall_uninstall(fakes, home, capsys, monkeypatch, tmp_path):
    config = tmp_path / "xdg config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    path = config / "systemd" / "user" / "lmsd.service"
    reload_, enable = (["systemctl", "--user", "daemon-reload"],
                       ["systemctl", "--user", "enable", "--now", "lmsd.service"])

    assert lmsd_service("install", "--manager", "systemd") == 0
    assert fakes.calls() == [SHOW, reload_, enable]
    text = path.read_text()
    assert f"ExecStart={service_actions.lmsd_command()[0]} serve\n" in text
    assert text == service_systemd.render_systemd(service_actions.lmsd_command())
    out = capsys.readouterr().out
    assert out.splitlines()[:3] == [f"wrote {path}", "ran systemctl --user daemon-reload",
                                    "ran systemctl --user enable --now lmsd.service"]
    assert fakes.state == {"loaded": True, "enabled": True, "active": True}

    assert lmsd_service("install") == 0  # the default manager on Linux
    assert fakes.calls() == [SHOW, reload_, enable]
    assert capsys.readouterr().out.startswith(f"unchanged {path}\n")
    assert path.read_text() == text and "restarts" not in fakes.state

    path.write_text(text.replace("RestartSec=2", "RestartSec=9"))  # an older install
    assert lmsd_service("install") == 0
    assert fakes.calls() == [SHOW, reload_, ["systemctl", "--user", "try-restart",
                                             "lmsd.service"], enable]
    assert path.read_text() == text and fakes.state["restarts"] == 1
    capsys.readouterr()

    assert lmsd_service("uninstall") == 0
    assert fakes.calls() == [SHOW, ["systemctl", "--user", "disable", "--now", "lmsd.service"],
                             reload_]
    assert not path.exists()
    assert capsys.readouterr().out == (
        "ran systemctl --user disable --now lmsd.service\n"
        f"removed {path}\nran systemctl --user daemon-reload\n")
    assert fakes.state == {"loaded": False, "enabled": False, "active": False, "restarts": 1}

    assert lmsd_service("uninstall") == 0
    assert fakes.calls() == [SHOW]
    assert capsys.readouterr().out == f"not installed: {path} does not exist\n"


def test_systemd_status(fakes, home, capsys, healthz):
    assert lmsd_service("status", "--admin-listen", healthz) == service_actions.NOT_RUNNING
    assert fakes.calls() == [SHOW]
    path = home / ".config" / "systemd" / "user" / "lmsd.service"
    assert capsys.readouterr().out == (
        f"lmsd.service: not installed ({path} does not exist)\n"
        f"daemon: answering at http://{healthz} (lmsd 9.9.9)\n")

    assert lmsd_service("install") == 0
    capsys.readouterr()
    assert lmsd_service("status", "--admin-listen", healthz) == 0
    assert capsys.readouterr().out == (
        "lmsd.service: active (running), pid 4242, enabled\n"
        f"daemon: answering at http://{healthz} (lmsd 9.9.9)\n")

    port = dead_address()
    assert lmsd_service("status", "--admin-listen", port) == service_actions.NOT_RUNNING
    out = capsys.readouterr().out
    assert out.startswith("lmsd.service: active (running), pid 4242, enabled\n"
                          f"daemon: not answering at http://{port} (")


def test_systemctl_failure_is_one_line_and_exit_1(fakes, home, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", "enable")
    assert lmsd_service("install") == 1
    err = capsys.readouterr().err
    assert err == ("lmsd: `systemctl --user enable --now lmsd.service` failed (exit 1): "
                   "Failed to enable unit: boom\n")


def test_no_systemctl_writes_nothing(fakes, home, capsys):
    fakes.remove("systemctl")
    for action in ("install", "uninstall"):
        assert lmsd_service(action, "--manager", "systemd") == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err == ("lmsd: systemd is not available here (no systemctl on PATH); "
                                "run `lmsd serve` under your own supervisor\n")
    assert list(home.iterdir()) == []


def test_no_user_manager_writes_nothing(fakes, home, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_NO_BUS", "1")
    assert lmsd_service("install") == 1
    assert fakes.calls() == [SHOW]
    assert capsys.readouterr().err == (
        "lmsd: systemd is not available here (systemctl --user cannot reach a user manager: "
        "Failed to connect to bus: No medium found); run `lmsd serve` under your own "
        "supervisor\n")
    assert list(home.iterdir()) == []


@pytest.mark.parametrize("missing", ["no user manager", "no systemctl"])
def test_status_without_a_service_manager_still_checks_healthz(fakes, home, capsys,
                                                               monkeypatch, healthz, missing):
    """A container: no service, but a daemon under another supervisor may answer."""
    if missing == "no systemctl":
        fakes.remove("systemctl")
        why = "no systemctl on PATH"
    else:
        monkeypatch.setenv("FAKE_NO_BUS", "1")
        why = ("systemctl --user cannot reach a user manager: Failed to connect to bus: "
               "No medium found")
    manager_line = (f"lmsd.service: systemd is not available here ({why}); run `lmsd serve` "
                    f"under your own supervisor\n")
    assert lmsd_service("status", "--admin-listen", healthz) == 0
    assert capsys.readouterr() == (
        manager_line + f"daemon: answering at http://{healthz} (lmsd 9.9.9)\n", "")
    port = dead_address()
    assert lmsd_service("status", "--admin-listen", port) == service_actions.NOT_RUNNING
    out, err = capsys.readouterr()
    assert out.startswith(manager_line + f"daemon: not answering at http://{port} (")
    assert err == ""
    assert list(home.iterdir()) == []
