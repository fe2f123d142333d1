"""``lmsd doctor``'s checks of this machine: the proxy and admin ports, the state
directory and the user service (systemd or launchd)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path

import httpx
import trio

from ...config import Settings, env_name
from ..client import local_url
from .result import FAIL, HTTP_TIMEOUT, OK, WARN, Result, execute, last_line

SERVICE_TIMEOUT = 5.0
SYSTEMD_UNIT = "lmsd.service"
LAUNCHD_LABEL = "ai.lmsd"


# -- the ports -----------------------------------------------------------------------------


async def _accepts(host: str, port: int) -> bool:
    """True if something accepts TCP connections at host:port."""
    with trio.move_on_after(HTTP_TIMEOUT):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError:
            return False
        await stream.aclose()
        return True
    return False


def _bind_problem(host: str, port: int) -> str | None:
    """Why lmsd could not listen on host:port (as hypercorn binds), or None."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve {host}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


async def _identify(client: httpx.AsyncClient, url: str, admin: bool,
                    token: str) -> tuple[str, str]:
    """("lmsd", version) / ("refused", "") / ("other", what answered)."""
    headers = {"Authorization": f"Bearer {token}"} if admin and token else {}
    try:
        response = await client.get(url + ("/healthz" if admin else "/"), headers=headers,
                                    timeout=HTTP_TIMEOUT)
    except httpx.HTTPError as exc:
        return "other", f"it does not answer HTTP: {exc or type(exc).__name__}"
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return "other", f"it answered HTTP {response.status_code}, not lmsd's JSON"
    if admin and response.status_code == 200 and data.get("status") == "ok" and data.get(
            "version"):
        return "lmsd", str(data["version"])
    if not admin and response.status_code == 200 and data.get("service") == "lmsd":
        return "lmsd", str(data.get("version", "?"))
    error = data.get("error")
    if (admin and response.status_code == 401 and isinstance(error, dict)
            and error.get("type") == "authentication_error"):
        return "refused", ""
    return "other", f"it answered HTTP {response.status_code}, not as lmsd"


async def check_port(settings: Settings, key: str, client: httpx.AsyncClient) -> Result:
    """``key`` ("listen" or "admin_listen") is free, or lmsd already serves there."""
    admin = key == "admin_listen"
    check = "admin_port" if admin else "proxy_port"
    listen = getattr(settings, key)
    host, _, port_text = listen.rpartition(":")
    host, port = host.strip("[]"), int(port_text)
    setting = f"set {key} = HOST:PORT (--{key.replace('_', '-')} or {env_name(key)})"
    if port == 0:
        return Result(check, OK, f"{listen}: any free port is picked at start")
    target = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if not await _accepts(target, port):
        problem = _bind_problem(host, port)
        if problem is None:
            return Result(check, OK, f"{listen} is free")
        return Result(check, FAIL, f"lmsd cannot listen on {listen}: {problem}", setting)
    what, info = await _identify(client, local_url(listen), admin, settings.admin_token)
    if what == "lmsd":
        return Result(check, OK, f"lmsd {info} is running here ({listen})")
    if what == "refused":
        return Result(check, WARN, f"lmsd answers on {listen} but refused the admin token",
                      f"set {env_name('admin_token')} to the daemon's admin_token")
    return Result(check, FAIL, f"port {port} is taken by another program ({info})",
                  f"stop that program, or {setting}")


# -- the state directory -------------------------------------------------------------------


def check_state_dir(settings: Settings) -> Result:
    """The state directory (or, if missing, the directory that would hold it) is writable."""
    target = Path(settings.state_dir)
    setting = f"set state_dir = DIR ({env_name('state_dir')} or the config file)"
    existing = target
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return Result("state_dir", FAIL, f"{existing} is not a directory, so lmsd cannot "
                      f"create {target}", setting)
    try:
        fd, name = tempfile.mkstemp(prefix=".lmsd-doctor-", dir=existing)
        try:
            os.write(fd, b"lmsd doctor\n")
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        return Result("state_dir", FAIL, f"{existing} is not writable: "
                      f"{exc.strerror or exc}", f"make it writable (chown/chmod), or {setting}")
    if existing != target:
        return Result("state_dir", OK, f"{target} does not exist yet; lmsd creates it in "
                      f"{existing}, which is writable")
    db = target / "sessions.sqlite3"
    if db.exists() and not os.access(db, os.R_OK | os.W_OK):
        return Result("state_dir", WARN, f"{db} is not writable: session chains are kept "
                      "in memory only", f"make {db} writable (chown/chmod)")
    return Result("state_dir", OK, f"{target} is writable")


# -- the user service ----------------------------------------------------------------------

NO_MANAGER = "run `lmsd serve` under your own supervisor"
_NO_BUS = ("failed to connect to", "not been booted with systemd", "no medium found",
           "$dbus_session_bus_address")
_INSTALLED = {"enabled", "enabled-runtime", "linked", "linked-runtime", "alias", "static",
              "indirect", "generated", "transient", "disabled"}


async def _systemd(environ: Mapping[str, str]) -> Result:
    path = shutil.which("systemctl", path=environ.get("PATH", os.defpath))
    if path is None:
        return Result("service", WARN, "no service manager here (systemctl not found)",
                      NO_MANAGER)
    active, active_err = "", ""
    try:
        rc, state, err = await execute([path, "--user", "is-enabled", SYSTEMD_UNIT],
                                       environ, SERVICE_TIMEOUT)
        if state in _INSTALLED:
            _, active, active_err = await execute(
                [path, "--user", "is-active", SYSTEMD_UNIT], environ, SERVICE_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        return Result("service", WARN, f"systemctl failed: {exc}", NO_MANAGER)
    if state == "not-found" or "no such file" in err.lower():
        return Result("service", WARN, f"{SYSTEMD_UNIT} is not installed",
                      "`lmsd service install`")
    if state == "masked":
        return Result("service", FAIL, f"{SYSTEMD_UNIT} is masked",
                      "systemctl --user unmask lmsd && systemctl --user start lmsd")
    problem = err if state not in _INSTALLED else active_err
    if state not in _INSTALLED or any(s in problem.lower() for s in _NO_BUS):
        why = last_line(problem) or f"systemctl exit {rc}"
        return Result("service", WARN, f"no user service manager here ({why})", NO_MANAGER)
    if active == "active":
        if state == "disabled":
            return Result("service", WARN, f"{SYSTEMD_UNIT} is running but not enabled: it "
                          "will not start at login", "systemctl --user enable lmsd")
        return Result("service", OK, f"{SYSTEMD_UNIT} is {state} and active")
    return Result("service", FAIL, f"{SYSTEMD_UNIT} is {state} but {active or 'not active'}",
                  "systemctl --user restart lmsd (why it stopped: "
                  "journalctl --user -u lmsd -n 50)")


async def _launchd(environ: Mapping[str, str]) -> Result:
    path = shutil.which("launchctl", path=environ.get("PATH", os.defpath))
    if path is None:
        return Result("service", WARN, "no service manager here (launchctl not found)",
                      NO_MANAGER)
    target = f"gui/{os.getuid()}/{LAUNCHD_LABEL}"
    try:
        rc, out, err = await execute([path, "print", target], environ, SERVICE_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        return Result("service", WARN, f"launchctl failed: {exc}", NO_MANAGER)
    home = Path(environ.get("HOME") or Path.home())
    plist = home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
    if rc != 0 and rc != 113 and "could not find service" not in (out + err).lower():
        why = last_line(err, out) or f"exit {rc}"
        return Result("service", WARN, f"launchctl print {target} failed: {why}", NO_MANAGER)
    if rc != 0:
        if plist.exists():
            return Result("service", FAIL, f"{plist} is installed but not loaded",
                          f"launchctl bootstrap gui/$UID {plist}")
        return Result("service", WARN, f"{LAUNCHD_LABEL} is not installed",
                      "`lmsd service install`")
    state = re.search(r"^\s*state = (.+)$", out, re.MULTILINE)
    if state and state.group(1).strip() == "running":
        return Result("service", OK, f"{LAUNCHD_LABEL} is loaded and running")
    what = state.group(1).strip() if state else "in an unknown state"
    return Result("service", FAIL, f"{LAUNCHD_LABEL} is loaded but {what}",
                  f"launchctl kickstart -k gui/$UID/{LAUNCHD_LABEL}")


async def check_service(environ: Mapping[str, str], platform: str) -> Result:
    """The lmsd user service is installed and running (systemd or launchd)."""
    if platform.startswith("linux"):
        return await _systemd(environ)
    if platform == "darwin":
        return await _launchd(environ)
    return Result("service", WARN, "no service manager here", NO_MANAGER)

