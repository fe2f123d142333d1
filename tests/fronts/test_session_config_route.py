"""``/session/ID/config`` on the proxy port (issue 22, minors): it changes where a
session's requests go, so it needs the admin token when one is set, is refused beyond
loopback without one, and takes no control characters (they reach ``lmsd tail``)."""

from __future__ import annotations

import httpx
import pytest

from lmsd.config import load_settings
from lmsd.fronts.anthropic import _require_admin
from lmsd.protocol.failures import Forbidden, Unauthorized

TOKEN = "s3cret-admin-token"
HOSTILE = "\x1b[2J\x1b]0;pwned\x07"


async def _put(server, body, **headers):
    async with httpx.AsyncClient(base_url=server.url) as http:
        return await http.put("/session/sess-1/config", json=body, headers=headers)


async def test_with_an_admin_token_the_config_route_needs_it(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, admin_token=TOKEN)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                    {"x-api-key": TOKEN}, {"Authorization": f"Bearer {TOKEN}x"}):
        answer = await _put(server, {"model": "elsewhere/model"}, **headers)
        assert answer.status_code == 401, (headers, answer.text)
        assert "admin token" in answer.json()["error"]["message"]
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.get("/session/sess-1/config", headers=headers)
                    ).status_code == 401
    assert server.store.config("sess-1").model is None  # nothing changed
    answer = await _put(server, {"model": "elsewhere/model"},
                        Authorization=f"Bearer {TOKEN}")
    assert answer.status_code == 200, answer.text
    assert server.store.config("sess-1").model == "elsewhere/model"


async def test_on_loopback_without_a_token_nothing_changes(start_lmsd, emulator):
    server = await start_lmsd(emulator.url)
    answer = await _put(server, {"model": "elsewhere/model"})
    assert answer.status_code == 200, answer.text


async def test_beyond_loopback_without_a_token_the_route_is_refused(start_lmsd, emulator):
    server = await start_lmsd(emulator.url)
    # As if it listened on the network (the test binds loopback only): the route reads
    # the address it serves on when it is called.
    server.settings.listen = "192.0.2.7:19234"
    server.settings.trusted_network = True  # else no client key is already a 403
    answer = await _put(server, {"model": "elsewhere/model"})
    assert answer.status_code == 403, answer.text
    assert "admin_token" in answer.json()["error"]["message"]
    assert server.store.config("sess-1").model is None


@pytest.mark.parametrize(("listen", "token", "header", "refused"), [
    ("0.0.0.0:19234", "", None, Forbidden), ("[::]:19234", "", None, Forbidden),
    ("192.168.1.5:19234", "", "Bearer anything", Forbidden),
    ("127.0.0.1:19234", "", None, None), ("localhost:19234", "", None, None),
    ("[::1]:19234", "", None, None),
    ("0.0.0.0:19234", TOKEN, f"Bearer {TOKEN}", None),
    ("0.0.0.0:19234", TOKEN, "Bearer nope", Unauthorized),
    ("127.0.0.1:19234", TOKEN, None, Unauthorized)])
def test_who_may_change_a_session_config(listen, token, header, refused):
    settings = load_settings({"listen": listen, "admin_token": token}, {})
    if refused is None:
        _require_admin(settings.access, settings.daemon, header)
    else:
        with pytest.raises(refused):
            _require_admin(settings.access, settings.daemon, header)


@pytest.mark.parametrize("body", [
    {"model": HOSTILE}, {"model": "qwen\u202e"}, {"model": "a\x85b"}, {"model": "a\x7f"},
    {"model": "a\nb"}, {"allowedTools": ["Bash", "Re\x1bad"]}])
async def test_config_values_with_control_characters_are_refused(start_lmsd, emulator, body):
    server = await start_lmsd(emulator.url)
    answer = await _put(server, body)
    assert answer.status_code == 400, answer.text
    assert "control character" in answer.json()["error"]["message"]
    async with httpx.AsyncClient(base_url=server.admin_url) as http:
        answer = await http.put("/sessions/sess-1/config", json=body)
    assert answer.status_code == 400, answer.text
    assert "control character" in answer.json()["error"]["message"]
    assert "sess-1" not in server.store.configs
