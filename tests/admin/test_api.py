"""The admin API in a running lmsd: status, sessions, metrics, the event tail, its token."""

from __future__ import annotations

import json

import httpx
import pytest
import trio
import trio_websocket

from tests.emulator import Reply, Text
from tests.support.conversation import Conversation, tool_turns
from tests.support.daemon import MODEL, admin_get, next_event


async def test_status_sessions_reset_and_config(client, emulator, lmsd):
    emulator.script(*tool_turns(2))
    chat = Conversation(client, session="admin-1")
    await chat.send("start")
    await chat.send()
    status = (await admin_get(lmsd, "/status")).json()
    assert status["upstream"]["url"] == emulator.url
    assert status["upstream"]["source"] == "config"
    assert status["requests"]["requests"] == 2 and status["store"]["nodes"] == 2
    assert "hunter2" not in json.dumps(status)
    sessions = (await admin_get(lmsd, "/sessions")).json()["sessions"]
    [one] = [s for s in sessions if s["session"] == "admin-1"]
    [agent] = one["agents"]
    assert (agent["agent"], agent["model"], agent["turns"], agent["chain_hits"]) == (
        "main", MODEL, 2, 1)
    assert one["fronts"] == agent["fronts"] == ["anthropic"]
    assert agent["misses"] == {"no_node": 1}
    assert agent["last_response_id"] == emulator.generations[-1].response_id
    assert (await admin_get(lmsd, "/sessions/admin-1")).json()["session"] == "admin-1"
    assert (await admin_get(lmsd, "/sessions/nobody")).status_code == 404
    async with httpx.AsyncClient(base_url=lmsd.admin_url) as http:
        put = await http.put("/sessions/admin-1/config", json={"model": "other/model"})
        assert put.json()["config"]["model"] == "other/model"
        reset = (await http.delete("/sessions/admin-1")).json()
        assert reset == {"reset": "admin-1", "chain_nodes": 2}
        assert (await http.delete("/sessions")).status_code == 200
    assert lmsd.store.node_count() == 0


async def test_metrics(client, emulator, lmsd):
    emulator.script(Reply(Text("x")))
    await client.messages.create(model="claude-x", max_tokens=5,
                                 messages=[{"role": "user", "content": "x"}])
    text = (await admin_get(lmsd, "/metrics")).text
    for name in ("lmsd_requests_total", "lmsd_time_to_first_token_seconds_bucket",
                 "lmsd_request_duration_seconds_count", "lmsd_input_tokens_total",
                 "lmsd_output_tokens_total", "lmsd_chain_decisions_total",
                 "lmsd_requests_in_flight", "lmsd_upstream_first_event_seconds_count"):
        assert name in text, name
    assert 'lmsd_requests_total{front="anthropic",outcome="ok",stream="False"} 1.0' in text


async def test_event_tail_filters_by_session_and_type(client, emulator, lmsd):
    emulator.script(*tool_turns(1), *tool_turns(1))
    url = lmsd.admin_url.replace("http", "ws")
    async with trio_websocket.open_websocket_url(f"{url}/events?session=tail-a&type=request"
                                                 ) as ws:
        assert json.loads(await ws.get_message())["type"] == "subscribed"
        await Conversation(client, session="tail-b").send("other session")
        await Conversation(client, session="tail-a").send("mine")
        with trio.fail_after(10):
            first = json.loads(await ws.get_message())
            second = json.loads(await ws.get_message())
    assert (first["type"], second["type"]) == ("request.start", "request.end")
    assert first["session"] == second["session"] == "tail-a"
    assert second["outcome"] == "ok" and "ttft_ms" in second and second["output_tokens"] > 0


async def test_websocket_from_a_foreign_origin_is_refused(lmsd):
    url = lmsd.admin_url.replace("http", "ws")
    with pytest.raises(trio_websocket.HandshakeError):
        async with trio_websocket.open_websocket_url(
                f"{url}/events", extra_headers=[("Origin", "https://evil.example")]):
            pass


async def test_token_required_when_configured(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, admin_token="hunter2")
    assert (await admin_get(server, "/status")).status_code == 401
    good = await admin_get(server, "/status", headers={"Authorization": "Bearer hunter2"})
    assert good.status_code == 200 and "hunter2" not in good.text
    assert (await admin_get(server, "/healthz", headers={
        "Authorization": "Bearer wrong"})).status_code == 401
    url = server.admin_url.replace("http", "ws")
    with pytest.raises(trio_websocket.HandshakeError):
        async with trio_websocket.open_websocket_url(f"{url}/events"):
            pass
    async with trio_websocket.open_websocket_url(
            f"{url}/events", extra_headers=[("Authorization", "Bearer hunter2")]) as ws:
        assert json.loads(await ws.get_message())["type"] == "subscribed"


async def test_rejected_requests_show_in_the_tail_and_the_metrics(lmsd, emulator):
    with lmsd.bus.subscribe(types=("request",)) as sub:
        async with httpx.AsyncClient(base_url=lmsd.url) as http:
            await http.post("/v1/messages", content=b"{broken",
                            headers={"Content-Type": "application/json"})
        rejected = await next_event(sub, "request.rejected")
    assert (rejected["status"], rejected["error_type"]) == (400, "invalid_request_error")
    assert "not valid JSON" in rejected["error"] and rejected["path"] == "/v1/messages"
    text = (await admin_get(lmsd, "/metrics")).text
    assert 'lmsd_errors_total{front="anthropic",type="invalid_request_error"} 1.0' in text


CODEX_THREAD = "019a4f0e-7c1b-7d42-9e55-3f7a2b8c1d90"  # Codex's session-id: the thread UUID


async def test_a_codex_thread_is_a_session_named_by_its_front(lmsd, emulator):
    """A ``/v1/responses`` request with Codex's ``session-id`` header is listed by the admin
    API under that id, with its front; the metrics say the front (refused requests too)."""
    emulator.script(Reply(Text("hi")), Reply(Text("there")))
    body = {"model": "some-local-model", "stream": False, "store": False,
            "input": [{"type": "message", "role": "user",
                       "content": [{"type": "input_text", "text": "hello"}]}]}
    async with httpx.AsyncClient(base_url=lmsd.url) as http:
        answer = await http.post("/v1/responses", json=body,
                                 headers={"session-id": CODEX_THREAD})
        assert answer.status_code == 200, answer.text
        chat = await http.post("/v1/chat/completions", headers={"x-session-id": "chat-1"},
                               json={"model": MODEL,
                                     "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 200, chat.text
        broken = await http.post("/session/x/v1/chat/completions", content=b"{broken",
                                 headers={"Content-Type": "application/json"})
        assert broken.status_code == 400
    sessions = (await admin_get(lmsd, "/sessions")).json()["sessions"]
    by_id = {s["session"]: s for s in sessions}
    thread = by_id[CODEX_THREAD]
    assert thread["fronts"] == ["openai_responses"]
    [agent] = thread["agents"]
    assert (agent["agent"], agent["model"], agent["turns"], agent["fronts"]) == (
        "main", MODEL, 1, ["openai_responses"])
    assert by_id["chat-1"]["fronts"] == ["openai_chat"]
    detail = (await admin_get(lmsd, f"/sessions/{CODEX_THREAD}")).json()
    assert detail["fronts"] == ["openai_responses"]
    text = (await admin_get(lmsd, "/metrics")).text
    for front in ("openai_responses", "openai_chat"):
        assert f'lmsd_requests_total{{front="{front}",outcome="ok",stream="False"}} 1.0' \
            in text, front
        assert f'lmsd_chain_decisions_total{{front="{front}",result="miss_no_node"}} 1.0' \
            in text, front
    assert 'lmsd_requests_total{front="openai_chat",outcome="rejected",stream="n/a"} 1.0' \
        in text
    assert 'lmsd_requests_total{front="anthropic"' not in text


@pytest.mark.parametrize(("path", "front", "body"), [
    ("/v1/messages", "anthropic",
     {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    ("/v1/responses", "openai_responses", {"model": "some-local-model", "input": "x"}),
    ("/v1/chat/completions", "openai_chat",
     {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}),
])
async def test_every_front_names_itself_in_its_events(lmsd, emulator, path, front, body):
    """``request.start``, ``chain.decision`` and ``request.end`` carry the front, which the
    metrics and the sessions read."""
    emulator.script(Reply(Text("x")))
    with lmsd.bus.subscribe(types=("request", "chain")) as sub:
        async with httpx.AsyncClient(base_url=lmsd.url) as http:
            answer = await http.post(path, json=body, headers={"x-api-key": "k"})
            assert answer.status_code == 200, answer.text
        events = [await next_event(sub, kind)
                  for kind in ("request.start", "chain.decision", "request.end")]
    assert [e["front"] for e in events] == [front] * 3
    assert events[2]["outcome"] == "ok"


async def test_one_upstream_counts_the_sessions_placed_on_it(client, emulator, lmsd):
    """With a single upstream every conversation is placed there: ``/upstreams`` counts
    those active within ``active_window`` and names them, as the session cards name
    the upstream (it said 0 while the card showed it in use)."""
    emulator.script(*tool_turns(2), Reply(Text("b")))
    chat = Conversation(client, session="one-1")
    await chat.send("start")
    await chat.send()
    await Conversation(client, session="one-2", agent="helper").send("hi")
    [upstream] = (await admin_get(lmsd, "/upstreams")).json()["upstreams"]
    assert upstream["active_sessions"] == 2
    assert sorted(map(tuple, map(dict.values, upstream["sessions"]))) == [
        ("one-1", "main"), ("one-2", "helper")]
    assert upstream["active_window_s"] == lmsd.settings.active_window
    sessions = (await admin_get(lmsd, "/sessions")).json()["sessions"]
    assert {a["upstream"] for s in sessions for a in s["agents"]} == {upstream["name"]}
    status = (await admin_get(lmsd, "/status")).json()
    assert [u["active_sessions"] for u in status["upstreams"]] == [2]
    async with httpx.AsyncClient(base_url=lmsd.admin_url) as http:
        assert (await http.delete("/sessions/one-2")).status_code == 200
    [upstream] = (await admin_get(lmsd, "/upstreams")).json()["upstreams"]
    assert upstream["sessions"] == [{"session": "one-1", "agent": "main"}]
