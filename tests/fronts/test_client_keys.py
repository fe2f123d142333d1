"""A proxy shared on a network (issue 22): client keys off loopback, each client's sessions
its own. lmsd listens on 0.0.0.0 here (off loopback); the tests talk to it on 127.0.0.1."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmsd.config import ConfigError
from lmsd.daemon.supervisor import reload_settings
from tests.emulator import Reply, Text
from tests.support.daemon import next_event

LAPTOP = "laptop-key-0123456789abcdef"
DESKTOP = "desktop-key-fedcba9876543210"
KEYS = f"laptop={LAPTOP},desktop={DESKTOP}"
MODEL = "qwen/qwen3-coder-30b"  # the emulator's loaded model
WRONG = "wrong-key-00000000000000000000"


def local(url: str) -> str:
    """The URL of a server bound to a wildcard address, reached over loopback."""
    return url.replace("0.0.0.0", "127.0.0.1").replace("[::]", "127.0.0.1")


def messages_body(*turns: str) -> dict[str, Any]:
    roles = ("user", "assistant")
    return {"model": "claude-x", "max_tokens": 50,
            "messages": [{"role": roles[n % 2], "content": t} for n, t in enumerate(turns)]}


async def shared(start_lmsd: Any, emulator: Any, **overrides: Any) -> Any:
    return await start_lmsd(emulator.url, listen="0.0.0.0:0", **overrides)


async def test_off_loopback_without_keys_lmsd_refuses_to_start(start_lmsd, emulator):
    with pytest.raises(ConfigError) as caught:
        await shared(start_lmsd, emulator)
    message = str(caught.value)
    assert "\n" not in message
    assert "listen 0.0.0.0:0 is not a loopback address" in message
    assert "client_keys" in message and "trusted_network" in message


async def test_a_trusted_network_serves_without_keys(start_lmsd, emulator):
    emulator.script(Reply(Text("hi")))
    server = await shared(start_lmsd, emulator, trusted_network="true")
    async with httpx.AsyncClient(base_url=local(server.url)) as http:
        response = await http.post("/v1/messages", json=messages_body("hello"))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/messages", messages_body("hello")),
    ("/session/s1/v1/messages", messages_body("hello")),
    ("/v1/messages/count_tokens", messages_body("hello")),
    ("/v1/models", None),
    ("/session/s1/config", None),
])
async def test_a_request_without_a_key_is_an_anthropic_403(start_lmsd, emulator, path, body):
    """403 ``permission_error``: Claude Code shows it at once, where it retries a 401 for
    about three minutes (claude-code-traffic: "401 is retried like a 5xx")."""
    server = await shared(start_lmsd, emulator, client_keys=KEYS)
    async with httpx.AsyncClient(base_url=local(server.url)) as http:
        response = await (http.post(path, json=body) if body else http.get(path))
    assert response.status_code == 403, response.text
    assert response.json()["type"] == "error"
    error = response.json()["error"]
    assert error["type"] == "permission_error"
    assert error["message"].startswith("no client key sent")
    assert not emulator.generations


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}]}),
    ("/v1/responses", {"model": "m", "input": "x"}),
])
async def test_a_wrong_key_is_an_openai_401_that_does_not_echo_it(start_lmsd, emulator, path,
                                                                   body, caplog):
    caplog.set_level(logging.DEBUG, logger="lmsd")
    server = await shared(start_lmsd, emulator, client_keys=KEYS)
    async with httpx.AsyncClient(base_url=local(server.url)) as http:
        response = await http.post(path, json=body, headers={"Authorization": f"Bearer {WRONG}"})
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")
    assert error["message"].startswith("client key not recognised")
    assert WRONG not in response.text
    rejected = [r for r in caplog.records if r.getMessage() == "request.rejected"]
    assert rejected and rejected[0].lmsd_fields["status"] == 401
    assert all(WRONG not in r.getMessage() and WRONG not in str(getattr(r, "lmsd_fields", ""))
               for r in caplog.records)
    assert not emulator.generations


async def test_each_client_sends_its_key_its_own_way(start_lmsd, emulator, caplog):
    """Claude Code: x-api-key or Authorization: Bearer; Codex and chat clients: Bearer."""
    caplog.set_level(logging.DEBUG, logger="lmsd")
    emulator.script(*[Reply(Text(f"answer {n}")) for n in range(4)])
    server = await shared(start_lmsd, emulator, client_keys=KEYS)
    async with httpx.AsyncClient(base_url=local(server.url)) as http:
        assert (await http.get("/")).status_code == 200  # says only that lmsd is here
        answers = [
            await http.post("/v1/messages", json=messages_body("a"),
                            headers={"x-api-key": LAPTOP}),
            await http.post("/v1/messages", json=messages_body("b"),
                            headers={"Authorization": f"Bearer {DESKTOP}"}),
            await http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {LAPTOP}"},
                            json={"model": MODEL, "messages": [{"role": "user", "content": "c"}]}),
            await http.post("/v1/responses", json={"model": "m", "input": "d"},
                            headers={"Authorization": f"Bearer {DESKTOP}"}),
        ]
        assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    async with httpx.AsyncClient(base_url=server.admin_url) as admin:
        metrics = (await admin.get("/metrics")).text
    starts = [r.lmsd_fields for r in caplog.records if r.getMessage() == "request.start"]
    ends = [r.lmsd_fields for r in caplog.records if r.getMessage() == "request.end"]
    assert [s["client"] for s in starts] == ["laptop", "desktop", "laptop", "desktop"]
    assert [e["client"] for e in ends] == ["laptop", "desktop", "laptop", "desktop"]
    assert 'lmsd_client_requests_total{client="laptop",outcome="ok"} 2.0' in metrics
    assert 'lmsd_client_requests_total{client="desktop",outcome="ok"} 2.0' in metrics
    assert all(key not in str(r.__dict__) for r in caplog.records for key in (LAPTOP, DESKTOP))


async def test_two_clients_with_one_session_id_get_two_sessions(start_lmsd, emulator):
    """The desktop sends the laptop's history under the laptop's session id: without
    namespaces it would chain onto the laptop's stored answer; it is sent whole instead."""
    emulator.script(Reply(Text("laptop's answer")), Reply(Text("desktop's answer")),
                    Reply(Text("laptop again")))
    server = await shared(start_lmsd, emulator, client_keys=KEYS)
    sid = {"x-claude-code-session-id": "s1"}
    async with httpx.AsyncClient(base_url=local(server.url)) as http:
        first = await http.post("/v1/messages", json=messages_body("hello"),
                                headers={"x-api-key": LAPTOP, **sid})
        assert first.status_code == 200, first.text
        history = ("hello", "laptop's answer", "and now?")
        other = await http.post("/v1/messages", json=messages_body(*history),
                                headers={"x-api-key": DESKTOP, **sid})
        assert other.status_code == 200, other.text
        again = await http.post("/v1/messages", json=messages_body(*history),
                                headers={"x-api-key": LAPTOP, **sid})
        assert again.status_code == 200, again.text
    gens = emulator.generations
    assert "previous_response_id" not in gens[1].body  # the desktop's: sent whole
    assert gens[2].body["previous_response_id"] == gens[0].response_id  # the laptop's chain
    async with httpx.AsyncClient(base_url=server.admin_url) as admin:
        sessions = (await admin.get("/sessions")).json()["sessions"]
        assert sorted((s["session"], s["client"]) for s in sessions) == [
            ("desktop~s1", "desktop"), ("laptop~s1", "laptop")]
        one = await admin.get("/sessions/laptop~s1")
        assert one.status_code == 200 and one.json()["client"] == "laptop"
        reset = await admin.delete("/sessions/desktop~s1")
        assert reset.status_code == 200
    assert server.store.nodes(("laptop~s1", "main", gens[0].body["model"]))


async def test_a_client_cannot_continue_anothers_response_id(start_lmsd, emulator):
    """Codex's previous_response_id: the desktop naming the laptop's response gets the same
    answer as for an id that never existed."""
    emulator.script(Reply(Text("laptop's answer")))
    server = await shared(start_lmsd, emulator, client_keys=KEYS)
    async with httpx.AsyncClient(base_url=local(server.url)) as http:
        first = await http.post("/v1/responses", json={"model": "m", "input": "hi"},
                                headers={"Authorization": f"Bearer {LAPTOP}",
                                         "session-id": "thread-1"})
        assert first.status_code == 200, first.text
        ids = (first.json()["id"], emulator.generations[0].response_id, "resp_never_existed")
        answers = [await http.post("/v1/responses", headers={
            "Authorization": f"Bearer {DESKTOP}", "session-id": "thread-1"},
            json={"model": "m", "input": "more", "previous_response_id": rid})
            for rid in ids]
    assert [a.status_code for a in answers] == [400, 400, 400]
    errors = [a.json()["error"] for a in answers]
    assert [e["message"].replace(rid, "ID") for e, rid in zip(errors, ids, strict=True)] == \
        ["Previous response with id 'ID' not found."] * 3
    assert {e["code"] for e in errors} == {"previous_response_not_found"}
    assert len(emulator.generations) == 1


async def test_session_config_on_the_proxy_is_the_callers_own(start_lmsd, emulator):
    server = await shared(start_lmsd, emulator, client_keys=KEYS)
    async with httpx.AsyncClient(base_url=local(server.url)) as http:
        put = await http.put("/session/s1/config", json={"model": "laptop-model"},
                             headers={"x-api-key": LAPTOP})
        assert put.status_code == 200, put.text
        mine = await http.get("/session/s1/config", headers={"x-api-key": LAPTOP})
        theirs = await http.get("/session/s1/config", headers={"x-api-key": DESKTOP})
    assert mine.json()["config"]["model"] == "laptop-model"
    assert theirs.json()["config"]["model"] is None
    assert server.store.config("s1").model is None  # not the anonymous session either
    assert server.store.config("laptop~s1").model == "laptop-model"


async def test_on_loopback_keys_are_optional_and_name_the_client(start_lmsd, emulator):
    emulator.script(*[Reply(Text(f"answer {n}")) for n in range(3)])
    server = await start_lmsd(emulator.url, client_keys=KEYS)  # 127.0.0.1
    sid = {"x-claude-code-session-id": "s1"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        for headers in ({}, {"x-api-key": WRONG}, {"x-api-key": LAPTOP}):
            response = await http.post("/v1/messages", json=messages_body("hi"),
                                       headers={**headers, **sid})
            assert response.status_code == 200, response.text
    async with httpx.AsyncClient(base_url=server.admin_url) as admin:
        sessions = (await admin.get("/sessions")).json()["sessions"]
    assert sorted((s["session"], s["client"]) for s in sessions) == [
        ("laptop~s1", "laptop"), ("s1", None)]


async def test_sighup_rotates_the_keys(start_lmsd, emulator, tmp_path: Path):
    emulator.script(*[Reply(Text(f"answer {n}")) for n in range(3)])
    keys_file = tmp_path / "client-keys"
    keys_file.write_text(f"# the laptop\nlaptop={LAPTOP}\n")
    server = await shared(start_lmsd, emulator, client_keys_file=str(keys_file))
    flags = {"listen": "0.0.0.0:0", "admin_listen": "127.0.0.1:0", "upstream": emulator.url,
             "state_dir": server.settings.state_dir, "watch": "false",
             "client_keys_file": str(keys_file)}

    async def status(key: str) -> int:
        async with httpx.AsyncClient(base_url=local(server.url)) as http:
            return (await http.post("/v1/messages", json=messages_body("hi"),
                                    headers={"x-api-key": key})).status_code

    assert await status(LAPTOP) == 200
    keys_file.write_text(f"laptop={DESKTOP}\n")  # rotated
    reload_settings(server.settings, server.router, flags)
    assert (await status(LAPTOP), await status(DESKTOP)) == (403, 200)
    keys_file.write_text("")  # no keys off loopback: refused, the running ones kept
    reload_settings(server.settings, server.router, flags)
    assert await status(DESKTOP) == 200
    assert server.settings.client_keys == {"laptop": DESKTOP}


async def test_recording_a_clients_session_records_only_that_client(start_lmsd, emulator):
    emulator.script(Reply(Text("laptop's")), Reply(Text("desktop's")), Reply(Text("laptop 2")))
    server = await shared(start_lmsd, emulator, client_keys=KEYS)
    async with httpx.AsyncClient(base_url=server.admin_url) as admin:
        started = await admin.put("/sessions/laptop~s1/record")
        assert started.status_code == 200, started.text
        sid = {"x-claude-code-session-id": "s1"}
        with server.bus.subscribe(types=("session",)) as sub:
            async with httpx.AsyncClient(base_url=local(server.url)) as http:
                for key in (LAPTOP, DESKTOP, LAPTOP):
                    answer = await http.post("/v1/messages", json=messages_body("hi"),
                                             headers={"x-api-key": key, **sid})
                    assert answer.status_code == 200, answer.text
            recorded = [await next_event(sub, "session.recorded") for _ in range(2)]
        files = (await admin.get("/recordings")).json()["files"]
    assert [r["session"] for r in recorded] == ["laptop~s1", "laptop~s1"]
    texts = [Path(f["path"]).read_text() for f in files]
    assert len(texts) == 2 and not any("desktop's" in t or LAPTOP in t for t in texts)
