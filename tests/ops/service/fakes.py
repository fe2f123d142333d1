"""Fake ``systemctl`` and ``launchctl`` executables for the ``lmsd service`` tests, and what
else they share: running ``lmsd service``, reading a unit, a ``/healthz`` server."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from lmsd.ops import service

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


def dead_address() -> str:
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
