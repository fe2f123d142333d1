"""TLS on both ports (issue 22): keys must not cross a network in clear."""

from __future__ import annotations

import logging
import ssl
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from lmsd.config import ConfigError, load_settings
from lmsd.daemon.listen import StartupError
from lmsd.ops.client import Admin
from tests.emulator import Reply, Text

KEY = "laptop-key-0123456789abcdef"


def self_signed(directory: Path, name: str = "lmsd") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (openssl, no shell)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=lmsd-test",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


async def test_both_ports_speak_https_and_not_http(start_lmsd, emulator, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    cert, key = self_signed(tmp_path)
    emulator.script(Reply(Text("over TLS")))
    server = await start_lmsd(emulator.url, listen="0.0.0.0:0", client_keys=f"laptop={KEY}",
                              tls_cert=str(cert), tls_key=str(key))
    proxy = server.url.replace("0.0.0.0", "127.0.0.1")
    assert proxy.startswith("https://") and server.admin_url.startswith("https://")
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=cert)) as https:
        answer = await https.post(f"{proxy}/v1/messages", headers={"x-api-key": KEY}, json={
            "model": "claude-x", "max_tokens": 20,
            "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["content"][0]["text"] == "over TLS"
        health = await https.get(f"{server.admin_url}/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
    async with httpx.AsyncClient() as plain:
        for url in (proxy, server.admin_url):
            with pytest.raises(httpx.HTTPError):  # no answer in clear, not even an error page
                await plain.get(url.replace("https://", "http://") + "/")
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    # lmsd status, sessions, reset: this machine's lmsd by its own certificate
    admin = Admin(urlsplit(server.admin_url).netloc, tls_cert=str(cert))
    assert admin.url.startswith("https://127.0.0.1:")
    status = await trio.to_thread.run_sync(admin.request, "GET", "/status")
    assert status["version"]


def test_tls_needs_both_files_and_says_which_is_wrong(tmp_path):
    cert, key = self_signed(tmp_path)
    with pytest.raises(ConfigError, match=r"^tls_cert and tls_key: set both"):
        load_settings({"tls_cert": str(cert)}, {})
    with pytest.raises(ConfigError, match=r"^tls_key .*missing\.key: No such file"):
        load_settings({"tls_cert": str(cert), "tls_key": str(tmp_path / "missing.key")}, {})
    (tmp_path / "junk").write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"^tls_cert .*junk: not a PEM file"):
        load_settings({"tls_cert": str(tmp_path / "junk"), "tls_key": str(key)}, {})


async def test_a_key_that_fits_another_certificate_is_one_line(start_lmsd, emulator,
                                                                tmp_path):
    cert, _ = self_signed(tmp_path, "one")
    _, other_key = self_signed(tmp_path, "two")
    with pytest.raises(StartupError) as caught:
        await start_lmsd(emulator.url, tls_cert=str(cert), tls_key=str(other_key))
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"tls_cert {cert} and tls_key {other_key}: ")
