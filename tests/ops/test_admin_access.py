"""Every client command against a stopped daemon (one line, exit 1) and behind the admin
token (refused, then served)."""

from __future__ import annotations

import json

import pytest

from tests.ops.lmsd_cli import (
    NOT_RUNNING,
    REFUSED,
    admin_address,
    clean_env,
    closed_port,
    converse,
    is_end,
    ok,
    run,
    tailing,
)


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["sessions"],
                                     ["models"], ["models", "--json"],
                                     ["reset", "--all"], ["reset", "sess-1"], ["tail"],
                                     ["tail", "--json"]])
async def test_a_stopped_daemon_is_one_line(command):
    port = closed_port()
    result = await run(*command, "--admin-listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode() == NOT_RUNNING.format(port=port)


async def test_a_stopped_daemon_found_through_the_environment():
    port = closed_port()
    result = await run("status", env=clean_env(LMSD_ADMIN_LISTEN=f"127.0.0.1:{port}"))
    assert (result.returncode, result.stderr.decode()) == (1, NOT_RUNNING.format(port=port))


async def test_the_admin_token(start_lmsd, emulator, tmp_path):
    server = await start_lmsd(emulator.url, admin_token="s3cret")
    await converse(server, emulator, "sess-1", turns=1)
    admin = ["--admin-listen", admin_address(server)]
    for command in (["status"], ["sessions", "--json"], ["models"], ["reset", "sess-1"],
                    ["tail"]):
        result = await run(*command, *admin)
        assert (result.returncode, result.stdout) == (1, b"")
        assert result.stderr.decode() == REFUSED
        wrong = await run(*command, *admin, env=clean_env(LMSD_ADMIN_TOKEN="guess"))
        assert wrong.returncode == 1
        assert wrong.stderr.decode() == \
            "lmsd: the admin API refused the token (check LMSD_ADMIN_TOKEN)\n"

    env = clean_env(LMSD_ADMIN_TOKEN="s3cret")
    assert "requests  1 served" in ok(await run("status", *admin, env=env))
    data = json.loads(ok(await run("sessions", "--json", *admin, env=env)))
    assert [s["session"] for s in data["sessions"]] == ["sess-1"]
    async with tailing(server, "--json", env=env) as tail:
        await converse(server, emulator, "sess-2", turns=1)
        lines = await tail.lines_until(is_end)
    assert json.loads(lines[-1])["session"] == "sess-2"
    assert ok(await run("reset", "--all", *admin, env=env)) == \
        "reset all sessions: 2 chain nodes dropped\n"

    # the config file's admin_listen and admin_token serve as well
    config = tmp_path / "lmsd.toml"
    config.write_text(f'admin_listen = "{admin_address(server)}"\nadmin_token = "s3cret"\n')
    data = json.loads(ok(await run("status", "--json", "--config", str(config))))
    assert data["settings"]["admin_token"] == "***"
