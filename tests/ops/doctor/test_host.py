"""``lmsd doctor``'s checks of this machine: the proxy and admin ports (free, lmsd, another
program), the state directory and the user service (fake systemctl and launchctl)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from lmsd import __version__
from lmsd.ops.doctor import diagnose
from lmsd.ops.doctor import host as doctor_host
from lmsd.ops.doctor.result import Result
from tests.ops.doctor.support import (  # isolated: autouse, no real LM Studio leaks in
    check,
    free_port,
    isolated,  # noqa: F401
    script,
    settings_for,
    shell,
)

# -- 3. the ports ------------------------------------------------------------------------------

async def test_ports_free(tmp_path, dead_port):
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}")
    results = {r.check: r for r in await diagnose(settings, shell(tmp_path, settings))}
    assert results["proxy_port"] == Result("proxy_port", "ok", f"{settings.listen} is free")
    assert results["admin_port"] == Result("admin_port", "ok",
                                           f"{settings.admin_listen} is free")


async def test_ports_taken_by_lmsd(start_lmsd, emulator, tmp_path):
    server = await start_lmsd(emulator.url)
    settings = settings_for(tmp_path, emulator.url, listen=server.url.split("//")[1],
                            admin_listen=server.admin_url.split("//")[1])
    results = {r.check: r for r in await diagnose(settings, shell(tmp_path, settings))}
    for name in ("proxy_port", "admin_port"):
        assert results[name].status == "ok"
        assert results[name].detail.startswith(f"lmsd {__version__} is running here")


async def test_admin_port_of_lmsd_with_a_token(start_lmsd, emulator, tmp_path):
    server = await start_lmsd(emulator.url, admin_token="s3cret")
    admin = server.admin_url.split("//")[1]
    wrong = settings_for(tmp_path, emulator.url, admin_listen=admin)
    result = await check(wrong, shell(tmp_path, wrong), "admin_port")
    assert result.status == "warn" and "refused the admin token" in result.detail
    assert "LMSD_ADMIN_TOKEN" in result.fix
    right = settings_for(tmp_path, emulator.url, admin_listen=admin)
    right.admin_token = "s3cret"
    assert (await check(right, shell(tmp_path, right), "admin_port")).status == "ok"


async def test_port_taken_by_another_program(emulator, tmp_path):
    port = int(emulator.url.rsplit(":", 1)[1])
    settings = settings_for(tmp_path, emulator.url, listen=f"127.0.0.1:{port}",
                            admin_listen=f"127.0.0.1:{port}")
    results = {r.check: r for r in await diagnose(settings, shell(tmp_path, settings))}
    for name, key in (("proxy_port", "listen"), ("admin_port", "admin_listen")):
        result = results[name]
        assert result.status == "fail"
        assert result.detail.startswith(f"port {port} is taken by another program (")
        assert f"set {key} = HOST:PORT" in result.fix


async def test_port_taken_by_something_that_is_not_http(tmp_path, nursery, dead_port):
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.aclose()

    nursery.start_soon(trio.serve_listeners, hang_up, listeners)
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}",
                            listen=f"127.0.0.1:{port}")
    result = await check(settings, shell(tmp_path, settings), "proxy_port")
    assert result.status == "fail" and "does not answer HTTP" in result.detail


def test_an_address_that_is_not_this_machines_cannot_be_bound():
    assert doctor_host._bind_problem("127.0.0.1", free_port()) is None
    assert doctor_host._bind_problem("192.0.2.1", free_port())  # TEST-NET-1, never local


# -- 4. the state directory --------------------------------------------------------------------

async def test_state_dir_writable_existing_and_missing(tmp_path, dead_port):
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}")
    (tmp_path / "state").mkdir()
    assert doctor_host.check_state_dir(settings) == Result(
        "state_dir", "ok", f"{tmp_path / 'state'} is writable")
    assert not [p for p in (tmp_path / "state").iterdir()]  # the probe file is gone
    settings.state_dir = str(tmp_path / "new" / "state")
    result = doctor_host.check_state_dir(settings)
    assert result.status == "ok" and f"creates it in {tmp_path}," in result.detail
    assert not (tmp_path / "new").exists()  # the doctor creates nothing


async def test_state_dir_under_a_regular_file_fails(tmp_path, dead_port):
    (tmp_path / "file").write_text("not a directory")
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}",
                            state_dir=str(tmp_path / "file" / "lmsd"))
    result = await check(settings, shell(tmp_path, settings), "state_dir")
    assert result.status == "fail"
    assert result.detail == (f"{tmp_path / 'file'} is not a directory, so lmsd cannot create "
                             f"{tmp_path / 'file' / 'lmsd'}")
    assert "LMSD_STATE_DIR" in result.fix


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
async def test_state_dir_read_only_fails(tmp_path, dead_port):
    (tmp_path / "ro").mkdir(mode=0o500)
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}",
                            state_dir=str(tmp_path / "ro"))
    result = doctor_host.check_state_dir(settings)
    assert result.status == "fail" and "is not writable" in result.detail


# -- 5. the service ----------------------------------------------------------------------------

SYSTEMCTL = """echo "$@" >> "$0.calls"
case "$2" in
  is-enabled) {enabled};;
  is-active) {active};;
esac
"""


@pytest.mark.parametrize(("enabled", "active", "status", "detail", "fix"), [
    ("echo enabled", "echo active", "ok", "lmsd.service is enabled and active", None),
    ("echo 'Failed to get unit file state for lmsd.service: No such file or directory' >&2;"
     " exit 1", "exit 9", "warn", "lmsd.service is not installed", "`lmsd service install`"),
    ("echo not-found; exit 4", "exit 9", "warn", "lmsd.service is not installed",
     "`lmsd service install`"),
    ("echo enabled", "echo failed; exit 3", "fail", "lmsd.service is enabled but failed",
     "systemctl --user restart lmsd"),
    ("echo disabled; exit 1", "echo inactive; exit 3", "fail",
     "lmsd.service is disabled but inactive", "systemctl --user restart lmsd"),
    ("echo disabled; exit 1", "echo active", "warn",
     "lmsd.service is running but not enabled", "systemctl --user enable lmsd"),
    ("echo enabled", "echo 'Failed to connect to bus: No medium found' >&2; exit 1", "warn",
     "no user service manager here (Failed to connect to bus: No medium found)",
     "run `lmsd serve` under your own supervisor"),
])
async def test_systemd_service(tmp_path, dead_port, enabled, active, status, detail, fix):
    systemctl = script(tmp_path / "bin" / "systemctl",
                       SYSTEMCTL.format(enabled=enabled, active=active))
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}")
    result = await check(settings, shell(tmp_path, settings), "service", platform="linux")
    assert result.status == status
    assert result.detail.startswith(detail)
    assert (result.fix or "").startswith(fix or "")
    calls = Path(f"{systemctl}.calls").read_text().splitlines()
    assert calls[0] == "--user is-enabled lmsd.service"


async def test_no_systemctl(tmp_path, dead_port):
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}")
    result = await check(settings, shell(tmp_path, settings), "service", platform="linux")
    assert result == Result("service", "warn", "no service manager here (systemctl not found)",
                            "run `lmsd serve` under your own supervisor")


@pytest.mark.parametrize(("body", "plist", "status", "fix"), [
    ("echo 'state = running'", False, "ok", None),
    ("echo 'state = not running'", False, "fail", "launchctl kickstart -k gui/$UID/ai.lmsd"),
    ("echo 'Could not find service \"ai.lmsd\" in domain' >&2; exit 113", False, "warn",
     "`lmsd service install`"),
    ("echo 'Could not find service \"ai.lmsd\" in domain' >&2; exit 113", True, "fail",
     "launchctl bootstrap gui/$UID"),
])
async def test_launchd_service(tmp_path, dead_port, body, plist, status, fix):
    script(tmp_path / "bin" / "launchctl", f'[ "$2" = "gui/{os.getuid()}/ai.lmsd" ] || exit 64\n'
           + body + "\n")
    if plist:
        agents = tmp_path / "home" / "Library" / "LaunchAgents"
        agents.mkdir(parents=True)
        (agents / "ai.lmsd.plist").write_text("<plist/>")
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}")
    result = await check(settings, shell(tmp_path, settings), "service", platform="darwin")
    assert result.status == status
    assert (result.fix or "").startswith(fix or "")
