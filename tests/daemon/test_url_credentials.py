"""Credentials in an upstream URL (``http://user:pass@host``) are sent as basic auth and
shown nowhere: not in the log, ``/status``, ``/upstreams``, ``/metrics``, ``/sessions``,
the store's bytes or the state dir's file names (issue 22)."""

from __future__ import annotations

import base64
import logging
import os

import httpx
import pytest

from lmsd.config import load_settings, redacted
from lmsd.log import JsonFormatter, TextFormatter
from lmsd.protocol.urls import display_url, scrub, split_credentials, url_name

SECRET = "secretpass"


def test_display_url_masks_the_password_and_secret_query_values():
    assert display_url("http://user:secretpass@host:1234") == "http://user:***@host:1234"
    assert display_url("http://token@host") == "http://***@host"
    assert display_url("https://host/x?api_key=abc&model=m") == "https://host/x?api_key=***&model=m"
    assert display_url("http://host:1234") == "http://host:1234"
    assert display_url("auto") == "auto"
    assert url_name("http://user:secretpass@host:1234") == "host:1234"
    assert split_credentials("http://us%40r:p%3Ass@h:1/x") == ("http://h:1/x", ("us@r", "p:ss"))
    assert scrub("GET http://u:secretpass@h:1/v1 failed") == "GET http://u:***@h:1/v1 failed"


def test_settings_show_no_password():
    settings = load_settings({"upstream": "http://u:secretpass@h:1/v1"}, {})
    shown = repr(redacted(settings)) + repr(settings.notes)
    assert SECRET not in shown
    several = load_settings({"upstream": ["http://u:secretpass@a:1", "http://b:2"]}, {})
    assert [u.name for u in several.upstream_list()] == ["a:1", "b:2"]
    assert SECRET not in repr(redacted(several))


async def test_credentials_are_sent_and_never_shown(start_lmsd, emulator, caplog):
    caplog.set_level(logging.DEBUG, logger="lmsd")
    url = emulator.url.replace("http://", f"http://user:{SECRET}@")
    server = await start_lmsd(url)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        answer = await http.post("/v1/messages", headers={"x-session-id": "cred-1"},
                                 json={"model": "claude-x", "max_tokens": 5,
                                       "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200, answer.text
    shown = []
    async with httpx.AsyncClient(base_url=server.admin_url, timeout=30) as admin:
        for path in ("/status", "/upstreams", "/metrics", "/sessions", "/readyz"):
            got = await admin.get(path)
            assert got.status_code in (200, 503), (path, got.status_code)
            shown.append((path, got.text))
    status = next(text for path, text in shown if path == "/status")
    assert "user:***@" in status or emulator.url.removeprefix("http://") in status
    for path, text in shown:
        assert SECRET not in text, path
    lines = [f(record) for record in caplog.records
             for f in (TextFormatter().format, JsonFormatter().format)]
    assert lines and not [line for line in lines if SECRET in line]
    state = server.settings.state_dir
    names = []
    for root, dirs, files in os.walk(state):
        names += [*dirs, *files]
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                assert SECRET.encode() not in f.read(), name
    assert "sessions.sqlite3" in names and not [n for n in names if SECRET in n]
    basic = "Basic " + base64.b64encode(f"user:{SECRET}".encode()).decode()
    sent = [r for r in emulator.log if r.path.endswith("/messages") or "/v1/" in r.path]
    assert sent and all(r.headers.get("authorization") == basic for r in sent)


@pytest.mark.parametrize("url", ["http://user:secretpass@127.0.0.1:9"])
async def test_an_unreachable_upstream_is_named_without_its_password(start_lmsd, url, caplog):
    caplog.set_level(logging.DEBUG, logger="lmsd")
    server = await start_lmsd(url)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        answer = await http.post("/v1/messages",
                                 json={"model": "claude-x", "max_tokens": 5,
                                       "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code >= 500 and SECRET not in answer.text
    assert not [r for r in caplog.records if SECRET in TextFormatter().format(r)]
