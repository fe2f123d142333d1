"""Misconfiguration says what to do: an LM Studio that wants an API key, an upstream URL
ending in /v1, a chat server's 200 errors. What doctor says of them is in
tests/ops/doctor/test_misconfig.py; startup failures are in tests/daemon/test_startup.py."""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio

from lmsd.ops.status import format_status
from tests.emulator.auth import MISSING_TOKEN
from tests.support.upstream_key import KEY, NEEDS_KEY

MODEL = "qwen/qwen3-coder-30b"
HI = {"model": "claude-sonnet-4-6", "max_tokens": 20,
      "messages": [{"role": "user", "content": "hi"}]}


async def post(server: Any, body: dict[str, Any] = HI) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.post("/v1/messages", json=body)


async def admin_status(server: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.admin_url) as http:
        return (await http.get("/status")).json()


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["type"], error["message"]


def sse_errors(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:])["error"] for line in text.splitlines()
            if line.startswith("data: ") and '"type":"error"' in line.replace(" ", "")]


async def refused_polls(server: Any, emulator: Any, count: int) -> None:
    """Wait until the watcher was refused ``count`` times and lmsd reports it."""
    def refused() -> int:
        return sum(r.path == "/api/v1/models" and r.status == 401 for r in emulator.log)

    with trio.fail_after(20):
        while refused() < count or not (await admin_status(server))["upstream"].get("refused"):
            await trio.sleep(0.01)


# -- 1. an LM Studio that requires an API key ---------------------------------------------------


async def test_the_emulator_requires_a_key_as_lm_studio_does(emulator):
    emulator.api_key = KEY
    async with httpx.AsyncClient(base_url=emulator.url) as http:
        assert (await http.get("/lmstudio-greeting")).json() == {"lmstudio": True}
        for path in ("/v1/models", "/api/v1/models", "/api/v0/models"):
            missing = await http.get(path)
            assert missing.status_code == 401
            assert missing.json() == {"error": {"type": "invalid_request", "code":
                                                "invalid_api_key", "message": MISSING_TOKEN}}
        malformed = await http.get("/v1/models", headers={"Authorization": "Bearer lm-studio-x"})
        assert malformed.json()["error"]["message"] == (
            "Malformed LM Studio API token provided: lm-studio-*****")
        good = await http.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
        assert good.status_code == 200 and good.json()["data"][0]["id"] == MODEL
        answer = await http.post("/v1/responses", json={"model": MODEL, "input": "hi"})
        assert answer.status_code == 401


async def test_a_key_lm_studio_requires_is_named_in_the_error(start_lmsd, emulator):
    emulator.api_key = KEY
    server = await start_lmsd(emulator.url)
    for stream in (False, True):
        status, kind, message = error_of(await post(server, {**HI, "stream": stream}))
        assert (status, kind) == (403, "permission_error")  # Claude Code: no retry loop
        assert message.startswith(NEEDS_KEY)
        assert "no model loaded" not in message
    # with a model configured, it is the generation itself that is refused
    pinned = await start_lmsd(emulator.url, model=MODEL)
    for stream in (False, True):
        response = await post(pinned, {**HI, "stream": stream})
        if stream:
            assert response.status_code == 200
            [error] = sse_errors(response.text)
            kind, message = error["type"], error["message"]
        else:
            _, kind, message = error_of(response)
            assert response.status_code == 403
        assert kind == "permission_error" and message.startswith(NEEDS_KEY)


async def test_the_watcher_reports_a_missing_key_and_backs_off_without_crashing(start_lmsd,
                                                                                 emulator):
    emulator.api_key = KEY
    server = await start_lmsd(emulator.url, poll_interval="0.01")
    watcher = server.router.backends[0].watcher
    await refused_polls(server, emulator, 4)
    types = [e["type"] for e in server.bus.recent]
    assert "child.crashed" not in types and "child.restarted" not in types
    assert types.count("upstream.refused") == 1  # said once, not every poll
    assert watcher.next_poll_in() > 0.01  # backing off
    status = await admin_status(server)
    assert status["upstream"]["refused"].startswith(NEEDS_KEY)
    assert status["upstream"]["reachable"] is True
    assert f"REFUSED: {NEEDS_KEY}" in format_status(status)
    # LM Studio's authentication turned off: the watcher picks the models up again
    emulator.api_key = None
    with trio.fail_after(20):
        while not watcher.polls:
            await trio.sleep(0.01)
    assert watcher.refused is None and watcher.next_poll_in() == 0.01
    assert "REFUSED" not in format_status(await admin_status(server))


async def test_a_wrong_key_is_said_to_be_refused(start_lmsd, emulator):
    emulator.api_key = KEY
    for wrong, said in (("lm-studio-local", "Malformed LM Studio API token provided"),
                        ("sk-lm-Zz99:Yy88", "Invalid LM Studio API token provided")):
        server = await start_lmsd(emulator.url, upstream_api_key=wrong, poll_interval="0.01")
        status, kind, message = error_of(await post(server))
        assert (status, kind) == (403, "permission_error")
        assert message.startswith("LM Studio refused the API key in LMSD_UPSTREAM_API_KEY "
                                  f"(HTTP 401: {said}")
        assert wrong not in message
        await refused_polls(server, emulator, 1)
        assert (await admin_status(server))["upstream"]["refused"] == message


async def test_the_right_key_is_sent_everywhere(start_lmsd, emulator):
    emulator.api_key = KEY
    server = await start_lmsd(emulator.url, upstream_api_key=KEY, watch="true",
                              poll_interval="0.01")
    response = await post(server)
    assert response.status_code == 200, response.text
    with trio.fail_after(20):
        while not server.router.backends[0].watcher.polls:
            await trio.sleep(0.01)
    assert all(r.status != 401 for r in emulator.log)
    assert KEY not in json.dumps(await admin_status(server))


# -- 2. an upstream URL in the OpenAI base-URL form -----------------------------------------------


async def test_an_upstream_ending_in_v1_is_used_without_it(start_lmsd, emulator):
    server = await start_lmsd(emulator.url + "/v1/")
    assert server.router.backends[0].upstream.base_url == emulator.url
    adjusted = [e for e in server.bus.recent if e["type"] == "config.adjusted"]
    assert len(adjusted) == 1 and adjusted[0]["key"] == "upstream"
    assert f"using {emulator.url}" in adjusted[0]["note"]
    response = await post(server)
    assert response.status_code == 200, response.text
    status = await admin_status(server)
    assert status["upstream"]["api"] == "responses"  # LM Studio, not the chat fallback


# -- 6. a chat server answering HTTP 200 with {"error": ...} ---------------------------------------


async def test_a_chat_answer_of_200_with_an_error_is_that_error(start_lmsd, emulator):
    # The emulator answers an unknown endpoint as LM Studio does: 200 and an error string.
    server = await start_lmsd(emulator.url + "/no/such/prefix", upstream_api="chat",
                              model=MODEL)
    said = "Unexpected endpoint or method. (POST /no/such/prefix/v1/chat/completions)"
    plain = await post(server)
    status, kind, message = error_of(plain)
    assert (status, kind) == (502, "api_error") and said in message
    streamed = await post(server, {**HI, "stream": True})
    [error] = sse_errors(streamed.text)
    assert error["type"] == "api_error" and said in error["message"]
    assert '"text_delta"' not in streamed.text and '"message_stop"' not in streamed.text
