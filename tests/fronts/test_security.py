"""No web page can drive lmsd: DNS rebinding (a foreign Host) and cross-site requests (a
foreign Origin, a non-JSON body) are refused on both ports, before anything happens."""

from __future__ import annotations

import json

import httpx
import trio_websocket

from lmsd.sessions.config import SessionConfig
from tests.support.conversation import Conversation
from tests.support.daemon import next_event
from tests.support.processes import port_of
from tests.support.websocket import handshake

REQUEST = {"model": "claude-sonnet-4-6", "max_tokens": 16,
           "messages": [{"role": "user", "content": "hi"}]}
BROWSER = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors",
           "User-Agent": "Mozilla/5.0"}


def posts(emulator) -> int:
    """Requests that made the upstream do something (the watcher's GETs go on meanwhile)."""
    return sum(r.method != "GET" for r in emulator.log)


async def ws_handshake(admin_url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """A browser's WebSocket handshake to /events, sent with any Host: (status, body)."""
    return await handshake(admin_url, "/events", headers)


def assert_refused(response: httpx.Response, status: int, *needles: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == ("permission_error" if status == 403
                                     else "invalid_request_error")
    for needle in needles:
        assert needle in body["error"]["message"], body


async def test_delete_sessions_with_a_rebound_host_wipes_nothing(lmsd, client, emulator):
    """curl -X DELETE -H 'Host: evil.example:19235' 127.0.0.1:19235/sessions"""
    await Conversation(client, session="keep-me").send("hello")
    await lmsd.store.set_config("keep-me", SessionConfig(model="other/model"))
    nodes = lmsd.store.node_count()
    assert nodes > 0
    async with httpx.AsyncClient(base_url=lmsd.admin_url) as http:
        response = await http.delete("/sessions", headers={"Host": "evil.example:19235"})
        assert_refused(response, 403, "'evil.example:19235'", "allowed_hosts",
                       "LMSD_ALLOWED_HOSTS")
        one = await http.delete("/sessions/keep-me", headers={"Host": "evil.example"})
        assert_refused(one, 403, "'evil.example'")
        put = await http.put("/sessions/keep-me/config", json={"allowedTools": ["Bash"]},
                             headers={"Host": "evil.example:19235"})
        assert_refused(put, 403, "'evil.example:19235'")
        listed = (await http.get("/sessions")).json()["sessions"]
    assert lmsd.store.node_count() == nodes
    assert lmsd.store.config("keep-me") == SessionConfig(model="other/model")
    assert [s["session"] for s in listed] == ["keep-me"]


async def test_a_rebound_page_cannot_read_status_or_use_the_proxy(lmsd, emulator):
    evil = {"Host": f"evil.example:{port_of(lmsd.admin_url)}"}
    async with httpx.AsyncClient(base_url=lmsd.admin_url) as http:
        for path in ("/status", "/sessions", "/metrics", "/healthz"):
            response = await http.get(path, headers=evil)
            assert_refused(response, 403, "evil.example")
            assert "settings" not in response.text
    seen = posts(emulator)
    evil = {"Host": f"evil.example:{port_of(lmsd.url)}"}
    async with httpx.AsyncClient(base_url=lmsd.url) as http:
        assert_refused(await http.get("/v1/models", headers=evil), 403, "allowed_hosts")
        # same-origin for the rebound page, so JSON and no Origin: only Host tells
        post = await http.post("/v1/messages", json=REQUEST, headers=evil)
        assert_refused(post, 403, "evil.example")
    assert posts(emulator) == seen


async def test_a_text_plain_post_from_a_foreign_origin_never_reaches_the_upstream(
        lmsd, emulator):
    """What fetch(url, {method: "POST", mode: "no-cors", body}) on evil.example sends."""
    seen = posts(emulator)
    async with httpx.AsyncClient(base_url=lmsd.url) as http:
        response = await http.post("/v1/messages", content=json.dumps(REQUEST), headers={
            "Content-Type": "text/plain;charset=UTF-8", "Origin": "https://evil.example",
            **BROWSER})
        assert_refused(response, 403, "'https://evil.example'", "allowed_origins")
        counted = await http.post("/v1/messages/count_tokens", content=json.dumps(REQUEST),
                                  headers={"Content-Type": "text/plain",
                                           "Origin": "https://evil.example"})
        assert_refused(counted, 403, "https://evil.example")
    assert posts(emulator) == seen


async def test_a_form_post_gets_415_and_never_reaches_the_upstream(lmsd, emulator):
    """curl -d sends application/x-www-form-urlencoded, as an HTML form does."""
    seen = posts(emulator)
    async with httpx.AsyncClient(base_url=lmsd.url) as http:
        form = await http.post("/v1/messages", content=json.dumps(REQUEST), headers={
            "Content-Type": "application/x-www-form-urlencoded"})
        assert_refused(form, 415, "'application/x-www-form-urlencoded'", "application/json")
        plain = await http.post("/v1/messages", content=json.dumps(REQUEST),
                                headers={"Content-Type": "text/plain"})
        assert_refused(plain, 415, "'text/plain'")
        bare = await http.post("/v1/messages", content=json.dumps(REQUEST))
        assert_refused(bare, 415, "no Content-Type")
        config = await http.put("/session/s1/config", data={"model": "x"})
        assert_refused(config, 415, "application/x-www-form-urlencoded")
    assert posts(emulator) == seen
    assert lmsd.store.config("s1") == SessionConfig()


async def test_a_cross_site_request_without_an_origin_is_refused(lmsd):
    async with httpx.AsyncClient(base_url=lmsd.admin_url) as http:
        response = await http.delete("/sessions", headers={"Sec-Fetch-Site": "cross-site"})
        assert_refused(response, 403, "Sec-Fetch-Site: cross-site", "allowed_origins")
        foreign = await http.delete("/sessions", headers={"Origin": "https://evil.example"})
        assert_refused(foreign, 403, "https://evil.example")
        mine = await http.delete("/sessions", headers={"Sec-Fetch-Site": "same-origin"})
        assert mine.status_code == 200


async def test_refusals_are_logged(lmsd):
    with lmsd.bus.subscribe(types=("request",)) as sub:
        async with httpx.AsyncClient(base_url=lmsd.admin_url) as http:
            await http.delete("/sessions", headers={"Host": "evil.example:19235"})
        refused = await next_event(sub, "request.refused")
    assert (refused["app"], refused["method"], refused["path"]) == ("lmsd.admin", "DELETE",
                                                                     "/sessions")
    assert refused["host"] == "evil.example:19235" and refused["status"] == 403
    async with httpx.AsyncClient(base_url=lmsd.admin_url) as http:
        text = (await http.get("/metrics")).text
    assert 'lmsd_refused_requests_total{app="lmsd.admin",status="403"} 1.0' in text


async def test_websocket_with_a_rebound_host_or_foreign_origin_is_refused(lmsd):
    for headers in ({"Host": "evil.example:19235"}, {"Origin": "https://evil.example"},
                    {"Origin": "http://localhost:3000"}):
        status, body = await ws_handshake(lmsd.admin_url, headers)
        assert status == 403, body
        error = json.loads(body)["error"]
        assert error["type"] == "permission_error"
        assert next(iter(headers.values())) in error["message"]
    status, _ = await ws_handshake(lmsd.admin_url, {"Origin": lmsd.admin_url})
    assert status == 101  # a page lmsd itself would serve


async def test_lmsd_own_clients_and_loopback_names_are_served(lmsd, emulator):
    url = lmsd.admin_url.replace("http", "ws") + "/events"
    async with trio_websocket.open_websocket_url(url) as ws:  # what `lmsd tail` sends
        assert json.loads(await ws.get_message())["type"] == "subscribed"
    async with httpx.AsyncClient(base_url=lmsd.admin_url) as http:
        for host in ("localhost:19235", "127.5.6.7", "[::1]:19235", "LOCALHOST."):
            assert (await http.get("/healthz", headers={"Host": host})).status_code == 200
    async with httpx.AsyncClient(base_url=lmsd.url) as http:
        own = f"http://127.0.0.1:{port_of(lmsd.url)}"  # a same-origin page
        same = await http.post("/v1/messages", json=REQUEST, headers={"Origin": own})
        assert same.status_code == 200, same.text
        charset = await http.post("/v1/messages", content=json.dumps(REQUEST), headers={
            "Content-Type": "application/json; charset=utf-8"})
        assert charset.status_code == 200, charset.text


async def test_allow_listed_hosts_and_origins_are_accepted(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, allowed_hosts="lmsd.example,*.lan",
                              allowed_origins="https://ui.example")
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/v1/messages", json=REQUEST, headers={
            "Host": "lmsd.example:443", "Origin": "https://ui.example", **BROWSER})
        assert response.status_code == 200, response.text
        other = await http.post("/v1/messages", json=REQUEST, headers={
            "Host": "gpu.lan:19234", "Origin": "https://evil.example"})
        assert_refused(other, 403, "https://evil.example")
    async with httpx.AsyncClient(base_url=server.admin_url) as http:
        wiped = await http.delete("/sessions", headers={"Host": "gpu.lan:19235"})
        assert wiped.status_code == 200
        assert_refused(await http.get("/status", headers={"Host": "evil.example"}), 403)
    status, _ = await ws_handshake(server.admin_url, {"Host": "gpu.lan",
                                                      "Origin": "https://ui.example"})
    assert status == 101


async def test_the_allow_lists_change_live(lmsd):
    async with httpx.AsyncClient(base_url=lmsd.admin_url) as http:
        headers = {"Host": "gpu-box:19235"}
        assert (await http.get("/healthz", headers=headers)).status_code == 403
        lmsd.settings.allowed_hosts = ["gpu-box"]  # what SIGHUP's reload does
        assert (await http.get("/healthz", headers=headers)).status_code == 200


async def test_a_wildcard_listener_accepts_ip_addresses_but_not_foreign_names(
        start_lmsd, emulator):
    server = await start_lmsd(emulator.url, listen="0.0.0.0:0", trusted_network="true")
    url = f"http://127.0.0.1:{port_of(server.url)}"
    async with httpx.AsyncClient(base_url=url) as http:
        lan = await http.post("/v1/messages", json=REQUEST,
                              headers={"Host": "192.168.1.5:19234"})
        assert lan.status_code == 200, lan.text
        assert_refused(await http.get("/v1/models", headers={"Host": "evil.example"}), 403)
