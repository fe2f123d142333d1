"""``lmsd service``: the command it installs, the unit and plist templates as rendered (and
checked by ``systemd-analyze verify``), and dry runs that change nothing."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lmsd.config import Settings
from lmsd.ops.service import actions as service_actions
from lmsd.ops.service import launchd as service_launchd
from lmsd.ops.service import systemd as service_systemd
from tests.ops.service.fakes import (
    TARGET,
    UID,
    files_under,
    lmsd_service,
    unit_settings,
)

# -- the command ----------------------------------------------------------------------------


def test_command_is_the_console_script_beside_the_interpreter():
    command = service_actions.lmsd_command()
    assert command == [os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "lmsd")]
    assert os.path.isabs(command[0]) and os.access(command[0], os.X_OK)


def test_command_on_path_counts_only_for_the_same_interpreter(tmp_path, monkeypatch):
    python = tmp_path / "py" / "bin" / "python3"
    python.parent.mkdir(parents=True)
    python.touch()
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    script = scripts / "lmsd"
    script.write_text(f"#!{python}\nimport lmsd\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", "scripts")  # a relative PATH entry: the result is absolute
    monkeypatch.chdir(tmp_path)
    assert service_actions.lmsd_command(str(python)) == [str(script)]
    script.write_text("#!/usr/bin/python3.7\nimport lmsd\n")
    assert service_actions.lmsd_command(str(python)) == [str(python), "-m", "lmsd"]
    script.unlink()
    assert service_actions.lmsd_command(str(python)) == [str(python), "-m", "lmsd"]


# -- the systemd unit -----------------------------------------------------------------------


def test_unit_template_directives():
    text = service_actions.template("systemd/lmsd.service")
    values = unit_settings(text)
    expected = {
        "Type": "notify", "NotifyAccess": "main", "ExecStart": "@LMSD_EXEC@ serve",
        "ExecReload": "/bin/kill -HUP $MAINPID", "Restart": "on-failure", "RestartSec": "2",
        "WatchdogSec": "30", "TimeoutStopSec": "45", "KillMode": "mixed",
        "StateDirectory": "lmsd", "Environment": "LMSD_STATE_DIR=%S/lmsd",
        "StandardOutput": "journal", "StandardError": "journal", "ProtectHome": "read-only",
        "ProtectSystem": "strict", "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "NoNewPrivileges": "yes", "WantedBy": "default.target",
    }
    assert {k: values[k][-1] for k in expected} == expected
    assert "%h/.lmstudio" in values["ReadWritePaths"][0]
    assert "%h/.cache/lm-studio" in values["ReadWritePaths"][0]
    assert float(values["TimeoutStopSec"][0]) > Settings().drain_timeout


def test_rendered_unit_quotes_and_escapes_the_command():
    text = service_systemd.render_systemd(["/opt/my apps/bin/python3", "-m", "lmsd", "100%",
                                           "$HOME"])
    line = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    assert line == 'ExecStart="/opt/my apps/bin/python3" -m lmsd 100%% $$HOME serve'
    assert "@" not in text.replace("$MAINPID", "")


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found:
        return found
    if os.environ.get("LMSD_REQUIRE_SYSTEMD") == "1":
        pytest.fail("LMSD_REQUIRE_SYSTEMD=1 but systemd-analyze is not on PATH")
    pytest.skip("systemd-analyze is not installed (Debian/Ubuntu: apt-get install systemd); "
                "set LMSD_REQUIRE_SYSTEMD=1 to make this a failure")


def verify(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze --user verify`` the unit; a private runtime directory lets it run
    without a user manager."""
    unit_dir, runtime = tmp_path / "units", tmp_path / "runtime"
    unit_dir.mkdir(exist_ok=True)
    runtime.mkdir(mode=0o700, exist_ok=True)
    unit = unit_dir / "lmsd.service"
    unit.write_text(text)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run([systemd_analyze(), "--user", "verify", str(unit)],
                          capture_output=True, text=True, env=env, timeout=60, check=False)


def test_rendered_unit_passes_systemd_analyze_verify(tmp_path):
    done = verify(tmp_path, service_systemd.render_systemd(service_actions.lmsd_command()))
    # verify exits 0 even for unknown keys or bad values, so any output is a failure
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_rendered_unit_with_a_awkward_path_passes_verify(tmp_path):
    odd = tmp_path / "my apps 100%"
    odd.mkdir()
    (odd / "lmsd").symlink_to(service_actions.lmsd_command()[0])
    done = verify(tmp_path, service_systemd.render_systemd([str(odd / "lmsd")]))
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_verify_catches_a_broken_unit(tmp_path):
    done = verify(tmp_path, service_systemd.render_systemd([str(tmp_path / "missing" / "lmsd")]))
    assert done.returncode != 0 and "not executable" in done.stderr
    done = verify(tmp_path, service_systemd.render_systemd(service_actions.lmsd_command()).replace(
        "Type=notify", "Type=notifyy"))
    assert "Failed to parse service type, ignoring: notifyy" in done.stdout + done.stderr


# -- the launchd plist ----------------------------------------------------------------------


def test_plist_template_parses():
    data = plistlib.loads(service_actions.template("launchd/ai.lmsd.plist").encode())
    assert data["ProgramArguments"] == ["@LMSD_EXEC@", "serve"]


def test_rendered_plist(tmp_path):
    home = tmp_path / "home"
    command = ["/opt/py/bin/python3", "-m", "lmsd"]
    data = plistlib.loads(service_launchd.render_launchd(command, home))
    assert data["Label"] == "ai.lmsd"
    assert data["ProgramArguments"] == [*command, "serve"]
    assert os.path.isabs(data["ProgramArguments"][0])
    assert data["RunAtLoad"] is True
    assert data["KeepAlive"] == {"SuccessfulExit": False}
    assert data["ProcessType"] == "Background"
    logs = home / "Library" / "Logs" / "lmsd"
    # lmsd writes its own log, rotated; launchd's files (never rotated) are for crashes
    assert data["EnvironmentVariables"]["LMSD_LOG_FILE"] == str(logs / "lmsd.log")
    assert data["StandardOutPath"] == str(logs / "launchd.out.log")
    assert data["StandardErrorPath"] == str(logs / "launchd.err.log")
    path = data["EnvironmentVariables"]["PATH"].split(":")
    assert path[:2] == ["/opt/py/bin", str(home / ".lmstudio" / "bin")] and "/usr/bin" in path
    assert "~" not in service_launchd.render_launchd(command, home).decode()
    assert "@" not in service_launchd.render_launchd(command, home).decode()


# -- dry runs -------------------------------------------------------------------------------


def test_systemd_dry_run_prints_everything_and_changes_nothing(fakes, home, capsys):
    assert lmsd_service("install", "--dry-run", "--manager", "systemd") == 0
    out = capsys.readouterr().out
    path = home / ".config" / "systemd" / "user" / "lmsd.service"
    assert f"would write {path}:\n" in out
    assert service_systemd.render_systemd(service_actions.lmsd_command()).rstrip("\n") in out
    assert out.endswith("would run: systemctl --user daemon-reload\n"
                        "would run: systemctl --user enable --now lmsd.service\n")
    assert files_under(home) == [] and fakes.calls() == []


def test_launchd_dry_run_prints_everything_and_changes_nothing(fakes, home, capsys):
    assert lmsd_service("install", "--dry-run", "--manager", "launchd") == 0
    out = capsys.readouterr().out
    path = home / "Library" / "LaunchAgents" / "ai.lmsd.plist"
    assert f"would write {path}:\n" in out
    plist = service_launchd.render_launchd(service_actions.lmsd_command(), home)
    assert plist.decode().rstrip() in out
    assert out.endswith(
        f"would create {home / 'Library' / 'Logs' / 'lmsd'}\n"
        f"would run (if it is loaded): launchctl bootout {TARGET}\n"
        f"would run: launchctl bootstrap gui/{UID} {path}\n"
        f"would run: launchctl kickstart {TARGET}\n")
    assert list(home.iterdir()) == [] and fakes.calls() == []


def test_dry_run_needs_no_manager(home, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert lmsd_service("install", "--dry-run", "--manager", "systemd") == 0
    assert "would run: systemctl --user enable --now lmsd.service" in capsys.readouterr().out
    assert list(home.iterdir()) == []
