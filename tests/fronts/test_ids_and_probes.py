"""Request ids on every answer, Claude Code's start-up probe, readiness, log lines and
the watcher's back-off: small things a user hit (issue 10 §6)."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import trio

from tests.support.daemon import MODEL, next_event, polls

MESSAGE = {"model": "claude-x", "max_tokens": 20,
           "messages": [{"role": "user", "content": "hi"}]}


def _events(server, kind: str) -> list[dict[str, Any]]:
    return [e for e in server.bus.recent if e["type"] == kind]


def _request_id(response: httpx.Response) -> str:
    value = response.headers.get("request-id")
    assert value is not None, f"{response.request.method} {response.request.url.path}"
    assert value.startswith("req_") and len(value) == 28
    return value


async def test_every_answer_carries_a_request_id_named_in_the_events(lmsd, http):
    whole = await http.post("/v1/messages", json=MESSAGE)
    streamed = await http.post("/v1/messages", json={**MESSAGE, "stream": True})
    ids = [_request_id(whole), _request_id(streamed)]
    assert len(set(ids)) == 2
    assert whole.json()["id"] == "msg_" + ids[0][4:]
    assert f'"id":"msg_{ids[1][4:]}"' in streamed.text
    for kind in ("request.start", "request.end"):
        assert [e["request_id"] for e in _events(lmsd, kind)] == ids
        assert [e["id"] for e in _events(lmsd, kind)] == ["msg_" + i[4:] for i in ids]

    others = [await http.post("/v1/messages/count_tokens", json=MESSAGE),
              await http.get("/v1/models"), await http.get("/")]
    assert [r.status_code for r in others] == [200, 200, 200]
    errors = [await http.post("/v1/messages", json={"model": "x"}),  # bad input
              await http.get("/v2/nothing"),                       # no such endpoint
              await http.post("/v1/messages", content=b"{",          # bad JSON
                              headers={"Content-Type": "application/json"})]
    assert [r.status_code for r in errors] == [400, 404, 400]
    rejected = [e["request_id"] for e in _events(lmsd, "request.rejected")]
    assert rejected == [_request_id(r) for r in errors]
    assert len({_request_id(r) for r in [whole, streamed, *others, *errors]}) == 8


async def test_admin_answers_carry_a_request_id(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, admin_token="s3cret")
    async with httpx.AsyncClient(base_url=server.admin_url) as admin:
        refused = await admin.get("/status")
        headers = {"Authorization": "Bearer s3cret"}
        answers = [await admin.get(p, headers=headers)
                   for p in ("/healthz", "/readyz", "/status", "/sessions", "/nothing")]
    assert refused.status_code == 401
    assert [r.status_code for r in answers] == [200, 200, 200, 200, 404]
    assert len({_request_id(r) for r in [refused, *answers]}) == 6


async def test_claude_codes_hello_probe_is_answered_without_a_warning(lmsd, http):
    head = await http.head("/api/hello")
    get = await http.get("/api/hello")
    assert (head.status_code, get.status_code) == (200, 200)
    _request_id(head)
    assert _events(lmsd, "request.rejected") == []
    assert [e for e in lmsd.bus.recent if e["level"] not in ("info", "debug")] == []


async def test_ignored_upstream_events_are_a_debug_event(lmsd, http):
    response = await http.post("/v1/messages", json=MESSAGE)
    assert response.status_code == 200
    [end] = _events(lmsd, "request.end")
    assert "ignored_upstream_events" not in end
    [ignored] = _events(lmsd, "upstream.ignored_events")
    assert ignored["level"] == "debug" and ignored["id"] == end["id"]
    assert ignored["events"] and all(n > 0 for n in ignored["events"].values())


async def test_readyz_is_503_with_the_reason_when_no_model_is_loaded(start_lmsd, emulator):
    emulator.models[MODEL].loaded = False
    server = await start_lmsd(emulator.url, poll_interval="0.05")
    async with httpx.AsyncClient(base_url=server.admin_url) as admin:
        response = await admin.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not ready"
        assert body["error"] == server.router.no_model_message()
        assert "has no model loaded" in body["error"]
        emulator.models[MODEL].loaded = True
        await polls(server, 2)
        response = await admin.get("/readyz")
    assert response.status_code == 200
    assert response.json()["models"] == [MODEL]


async def test_readyz_with_a_configured_model_is_ready_before_it_loads(start_lmsd, emulator):
    emulator.models[MODEL].loaded = False
    server = await start_lmsd(emulator.url, model=MODEL)  # LM Studio loads it on demand
    async with httpx.AsyncClient(base_url=server.admin_url) as admin:
        response = await admin.get("/readyz")
    assert response.status_code == 200


async def test_the_running_on_lines_name_proxy_and_admin(start_lmsd, emulator):
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Keep()
    logging.getLogger("lmsd").addHandler(handler)
    try:
        server = await start_lmsd(emulator.url)
    finally:
        logging.getLogger("lmsd").removeHandler(handler)
    running = sorted(line for line in lines if "Running on" in line)
    assert running == [
        f"admin API: Running on {server.admin_url} (CTRL + C to quit)",
        f"proxy (Anthropic API): Running on {server.url} (CTRL + C to quit)",
    ]


async def test_back_off_clears_when_the_model_is_loaded_again(start_lmsd, emulator):
    emulator.models[MODEL].context_length = 4096
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.05")
    watcher = server.router.backends[0].watcher
    with server.bus.subscribe(types=("model",), replay=500) as sub:
        await next_event(sub, "model.context_enforced")
        emulator.models[MODEL].context_length = 4096  # the user puts it back by hand
        await next_event(sub, "model.context_reverted")
        assert MODEL in watcher.to_json()["backing_off"]
        emulator.unload_model(MODEL)  # and later loads it again, small as before
        await next_event(sub, "model.unloaded")
        emulator.load_model(MODEL, 4096)
        cleared = await next_event(sub, "model.backoff_cleared")
        enforced = await next_event(sub, "model.context_enforced")
    assert cleared["model"] == MODEL
    assert (enforced["old"], enforced["new"]) == (4096, 32768)
    assert watcher.to_json()["backing_off"] == []
    with trio.fail_after(10):
        while emulator.models[MODEL].context_length != 32768:
            await trio.sleep(0.02)
