"""`lmsd serve` that cannot start says why in one line: a port in use, an admin API off loopback
without a token, a bad default config file."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import trio

from lmsd import __version__
from lmsd.daemon.holder import probe_url
from tests.daemon.test_tls import self_signed


async def serve_fails(tmp_path: Path, *args: str, env: dict[str, str] | None = None
                      ) -> tuple[int, list[str]]:
    """Run ``lmsd serve ARGS``; it must exit on its own. (exit status, stderr lines)"""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LMSD_", "XDG_"))}
    argv = [sys.executable, "-m", "lmsd", "serve", "--upstream", "http://127.0.0.1:9",
            "--state-dir", str(tmp_path / "state"), *args]
    with trio.fail_after(60):
        done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                      check=False, env={**base, **(env or {})})
    return done.returncode, done.stderr.decode().splitlines()


@pytest.mark.parametrize("which", ["listen", "admin_listen"])
async def test_a_port_in_use_is_one_line(which, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0",
                 which: f"127.0.0.1:{port}"}
        status, lines = await serve_fails(
            tmp_path, "--listen", ports["listen"], "--admin-listen", ports["admin_listen"],
            env={"HOME": str(tmp_path)})
    assert status == 1
    assert lines == [f"lmsd: cannot start: cannot listen on 127.0.0.1:{port} ({which}): "
                     "Address already in use"]


async def test_admin_off_loopback_without_a_token_is_one_line(tmp_path):
    status, lines = await serve_fails(tmp_path, "--listen", "127.0.0.1:0",
                                      "--admin-listen", "0.0.0.0:0", env={"HOME": str(tmp_path)})
    assert status == 2
    assert len(lines) == 1 and lines[0].startswith(
        "lmsd: config error: admin_listen 0.0.0.0:0 is not a loopback address: set admin_token")


async def test_the_default_config_file_is_read_and_a_bad_model_map_is_one_line(tmp_path):
    config = tmp_path / "xdg" / "lmsd" / "lmsd.toml"
    config.parent.mkdir(parents=True)
    config.write_text('listen = "127.0.0.1:0"\nadmin_listen = "127.0.0.1:0"\n'
                      '[model_map]\nopus = "big"\nhaiku = 4\n')
    status, lines = await serve_fails(tmp_path, env={"XDG_CONFIG_HOME": str(tmp_path / "xdg"),
                                           "HOME": str(tmp_path)})
    assert status == 2
    assert lines == [f"lmsd: config error: config file {config}: model_map: 'haiku' must name "
                     "a model (a non-empty string), got 4"]


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.mark.parametrize("which", ["listen", "admin_listen"])
async def test_a_port_held_by_another_lmsd_says_so(which, tmp_path, start_lmsd, emulator):
    running = await start_lmsd(emulator.url)
    port = _port(running.url if which == "listen" else running.admin_url)
    ports = {"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0",
             which: f"127.0.0.1:{port}"}
    status, lines = await serve_fails(
        tmp_path, "--listen", ports["listen"], "--admin-listen", ports["admin_listen"],
        env={"HOME": str(tmp_path)})
    flag = "--listen" if which == "listen" else "--admin-listen"
    assert status == 1
    assert lines == [f"lmsd: cannot start: cannot listen on 127.0.0.1:{port} ({which}): "
                     f"another lmsd ({__version__}) is already serving there; stop it "
                     f"(`lmsd service status` / the other `lmsd serve`) or choose another "
                     f"port with {flag}"]


async def test_an_lmsd_admin_api_behind_a_token_or_tls_is_still_named(tmp_path, start_lmsd,
                                                                        emulator):
    cert, key = self_signed(tmp_path)
    running = await start_lmsd(emulator.url, admin_token="t0ken-abc", tls_cert=str(cert),
                               tls_key=str(key))
    for url, which in ((running.url, "listen"), (running.admin_url, "admin_listen")):
        port = _port(url)
        ports = {"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0",
                 which: f"127.0.0.1:{port}"}
        status, lines = await serve_fails(
            tmp_path, "--listen", ports["listen"], "--admin-listen", ports["admin_listen"],
            "--tls-cert", str(cert), "--tls-key", str(key), env={"HOME": str(tmp_path)})
        version = f" ({__version__})" if which == "listen" else ""  # /healthz needs the token
        assert status == 1 and len(lines) == 1
        assert lines[0].startswith(f"lmsd: cannot start: cannot listen on 127.0.0.1:{port} "
                                   f"({which}): another lmsd{version} is already serving")


async def test_a_port_held_by_another_http_server_says_what_answered(tmp_path, emulator):
    port = _port(emulator.url)
    status, lines = await serve_fails(tmp_path, "--listen", f"127.0.0.1:{port}",
                                      "--admin-listen", "127.0.0.1:0",
                                      env={"HOME": str(tmp_path)})
    assert status == 1
    assert lines == [f"lmsd: cannot start: cannot listen on 127.0.0.1:{port} (listen): "
                     "Address already in use: held by another program, an HTTP server "
                     "(hypercorn-h11)"]


@pytest.mark.parametrize(("bind", "https", "url"), [
    ("0.0.0.0:8080", False, "http://127.0.0.1:8080"),
    ("[::]:8080", True, "https://[::1]:8080"),
    ("192.0.2.7:443", True, "https://192.0.2.7:443")])
def test_a_wildcard_address_is_probed_on_loopback(bind, https, url):
    assert probe_url(bind, https=https) == url
