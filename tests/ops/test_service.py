"""``lmsd service``: the unit and plist templates, and install/uninstall/status driven
through fake ``systemctl`` and ``launchctl`` executables."""

from __future__ import annotations

import argparse
import json
import os
import plistlib
import shutil
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lmsd.config import Settings
from lmsd.ops import service, service_actions, service_launchd, service_systemd

UID = os.getuid()
TARGET = f"gui/{UID}/ai.lmsd"
SHOW = ["systemctl", "--user", "show", "lmsd.service", "-p",
        "LoadState,ActiveState,SubState,MainPID,UnitFileState"]

# One fake for both managers: it logs its argv, keeps a little state in a JSON file, and
# fails when FAKE_NO_BUS is set or when its arguments contain FAKE_FAIL.
FAKE = r'''
import json, os, sys
from pathlib import Path

name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps([name, *args]) + "\n")
state_file = Path(os.environ["FAKE_STATE"])
state = json.loads(state_file.read_text()) if state_file.exists() else {}
def fail(message, code=1):
    sys.stderr.write(message + "\n")
    sys.exit(code)
if os.environ.get("FAKE_NO_BUS"):
    fail("Failed to connect to bus: No medium found")
if os.environ.get("FAKE_FAIL") and os.environ["FAKE_FAIL"] in " ".join(args):
    fail("something went wrong\nFailed to enable unit: boom")
if name == "systemctl":
    verb = args[1]
    if verb == "show":
        on = state.get("active", False)
        print("LoadState=" + ("loaded" if state.get("loaded") else "not-found"))
        print("ActiveState=" + ("active" if on else "inactive"))
        print("SubState=" + ("running" if on else "dead"))
        print("MainPID=" + ("4242" if on else "0"))
        print("UnitFileState=" + ("enabled" if state.get("enabled") else ""))
    elif verb == "daemon-reload":
        config = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        state["loaded"] = os.path.exists(os.path.join(config, "systemd/user/lmsd.service"))
    elif verb == "enable":
        if not state.get("loaded"):
            fail("Failed to enable unit: Unit file lmsd.service does not exist.")
        state.update(enabled=True, active=True)
    elif verb == "try-restart":
        state["restarts"] = state.get("restarts", 0) + state.get("active", False)
    elif verb == "disable":
        state.update(enabled=False, active=False)
else:
    verb = args[0]
    if verb == "print":
        if not state.get("loaded"):
            fail('Could not find service "ai.lmsd" in domain for port', 113)
        print(args[1] + " = {\n\tactive count = 1\n\tstate = running\n\tpid = 4242\n"
              "\tlast exit code = (never exited)\n\tendpoints = {\n\t\tstate = x\n\t}\n}")
    elif verb == "bootstrap":
        if state.get("loaded"):
            fail("Bootstrap failed: 5: Input/output error", 5)
        state.update(loaded=True, running=True)
    elif verb == "bootout":
        if not state.get("loaded"):
            fail("Boot-out failed: 3: No such process", 3)
        state.update(loaded=False, running=False)
    elif verb == "kickstart":
        if not state.get("loaded"):
            fail('Could not find service "ai.lmsd" in domain for port', 113)
        state["running"] = True
state_file.write_text(json.dumps(state))
'''


class Fakes:
    """Fake service managers on PATH, and what they were asked to do."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bin, self.log, self.state_file = root / "bin", root / "calls", root / "state.json"
        self.bin.mkdir(parents=True)
        self.monkeypatch = monkeypatch
        for name in ("systemctl", "launchctl"):
            path = self.bin / name
            path.write_text(f"#!{sys.executable}\n{FAKE}")
            path.chmod(0o755)
        monkeypatch.setenv("PATH", str(self.bin))
        monkeypatch.setenv("FAKE_LOG", str(self.log))
        monkeypatch.setenv("FAKE_STATE", str(self.state_file))

    def calls(self) -> list[list[str]]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        self.log.unlink(missing_ok=True)
        return [json.loads(line) for line in lines]

    @property
    def state(self) -> dict:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def remove(self, name: str) -> None:
        (self.bin / name).unlink()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake HOME, and an environment free of LMSD_* and XDG_CONFIG_HOME."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in list(os.environ):
        if name.startswith("LMSD_") or name == "XDG_CONFIG_HOME":
            monkeypatch.delenv(name)
    return home


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path) -> Fakes:
    return Fakes(tmp_path / "fakes", monkeypatch)


def lmsd_service(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="lmsd")
    service.add_parser(parser.add_subparsers(dest="command", required=True))
    return service.run(parser.parse_args(["service", *argv]))


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def unit_settings(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def dead_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


class Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"status": "ok", "version": "9.9.9"}).encode()
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def healthz():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


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

    port = dead_port()
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
    port = dead_port()
    assert lmsd_service("status", "--admin-listen", port) == service_actions.NOT_RUNNING
    out, err = capsys.readouterr()
    assert out.startswith(manager_line + f"daemon: not answering at http://{port} (")
    assert err == ""
    assert list(home.iterdir()) == []


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
    port = dead_port()
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
