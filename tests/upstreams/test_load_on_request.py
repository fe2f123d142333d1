"""A request naming a model LM Studio has downloaded but not loaded: lmsd loads it once, at
``min_context``, through LM Studio's load API (the engine's own JIT load at its default
context, then the watcher's reload, were two loads), and the request waits for it. Requests
that arrive meanwhile wait for the same load; a model that is not downloaded is a 404 that
names what can be served. The emulator's ``google/gemma-3-12b`` is downloaded, not loaded,
at 4096 tokens by default: a load at 32768 is lmsd's."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from tests.support.daemon import MODEL

COLD = "google/gemma-3-12b"
MIN_CONTEXT = 32768


def body(model: str, *, stream: bool = False) -> dict[str, Any]:
    return {"model": model, "max_tokens": 10, "stream": stream,
            "messages": [{"role": "user", "content": "hello"}]}


def loads(emulator) -> list[Any]:
    return [r for r in emulator.log if r.path == "/api/v1/models/load"]


async def wait_until(check: Any) -> None:
    with trio.fail_after(10):
        while not check():
            await trio.sleep(0.01)


async def started(start_lmsd, emulator, **overrides: str):
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.1", **overrides)
    await wait_until(lambda: server.router.backends[0].watcher.polls)
    return server


async def test_a_cold_model_is_loaded_once_at_min_context(start_lmsd, emulator):
    server = await started(start_lmsd, emulator)
    watcher = server.router.backends[0].watcher
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        answer = await http.post("/v1/messages", json=body(COLD))
        assert answer.status_code == 200, answer.text
        assert answer.json()["stop_reason"] == "end_turn"
        before = watcher.polls
        await wait_until(lambda: watcher.polls >= before + 3)  # the watcher saw it loaded
        again = await http.post("/v1/messages", json=body(COLD))
        assert again.status_code == 200, again.text
    assert [r.body for r in loads(emulator)] == [{"model": COLD,
                                                  "context_length": MIN_CONTEXT}]
    assert emulator.models[COLD].loaded and emulator.models[COLD].context_length == MIN_CONTEXT
    assert not [r for r in emulator.log if r.path == "/api/v1/models/unload"]  # no reload
    said = [e for e in server.bus.recent if e["type"] == "model.load"]
    assert len(said) == 1 and said[0]["model"] == COLD and said[0]["why"] == "request"
    assert said[0]["context_length"] == MIN_CONTEXT and said[0]["seconds"] >= 0
    assert [g.model for g in emulator.generations] == [COLD, COLD]


async def test_the_load_is_capped_at_the_models_largest_context(start_lmsd, emulator):
    emulator.models[COLD].max_context_length = 16384
    server = await started(start_lmsd, emulator)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        answer = await http.post("/v1/messages", json=body(COLD))
    assert answer.status_code == 200, answer.text
    assert [r.body["context_length"] for r in loads(emulator)] == [16384]


async def test_two_requests_for_one_cold_model_wait_for_one_load(start_lmsd, emulator):
    emulator.load_gate = gate = trio.Event()
    server = await started(start_lmsd, emulator, ping_interval="0.1")
    answers: dict[str, int] = {}
    first_events: list[str] = []

    async def plain(http: httpx.AsyncClient) -> None:
        answer = await http.post("/v1/messages", json=body(COLD))
        answers["plain"] = answer.status_code

    async def streamed(http: httpx.AsyncClient) -> None:
        async with http.stream("POST", "/v1/messages", json=body(COLD, stream=True)) as r:
            events = [line.removeprefix("event: ") async for line in r.aiter_lines()
                      if line.startswith("event: ")]
        answers["streamed"] = r.status_code
        first_events.extend(events)

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http, \
            trio.open_nursery() as nursery:
        nursery.start_soon(plain, http)
        await wait_until(lambda: loads(emulator))  # the first request's load is held
        nursery.start_soon(streamed, http)
        await wait_until(lambda: any(e["type"] == "request.waiting_for_reload"
                                     for e in server.bus.recent))
        assert not emulator.generations
        gate.set()
    assert answers == {"plain": 200, "streamed": 200}
    assert first_events[0] == "message_start" and first_events[-1] == "message_stop"
    assert len(loads(emulator)) == 1
    assert len(emulator.generations) == 2


async def test_a_failed_load_is_the_engines_reason_and_the_next_request_tries_again(
        start_lmsd, emulator):
    emulator.fail_loads = 1
    server = await started(start_lmsd, emulator)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        failed = await http.post("/v1/messages", json=body(COLD))
        assert failed.status_code >= 500, failed.text
        message = failed.json()["error"]["message"]
        assert f"could not load {COLD}" in message and "not enough memory" in message
        again = await http.post("/v1/messages", json=body(COLD))
        assert again.status_code == 200, again.text
    assert len(loads(emulator)) == 2
    assert [e["type"] for e in server.bus.recent
            if e["type"] in ("model.load", "model.load_failed")] == ["model.load_failed",
                                                                     "model.load"]


async def test_a_model_not_downloaded_is_a_404_naming_what_can_be_served(start_lmsd, emulator):
    server = await started(start_lmsd, emulator)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        anthropic = await http.post("/v1/messages", json=body("nope/not-here-7b"))
        chat = await http.post("/v1/chat/completions", json={
            "model": "nope/not-here-7b", "messages": [{"role": "user", "content": "hi"}]})
    assert anthropic.status_code == 404
    error = anthropic.json()
    assert error["type"] == "error" and error["error"]["type"] == "not_found_error"
    for said in (error["error"]["message"], chat.json()["error"]["message"]):
        assert "'nope/not-here-7b' not found" in said
        assert MODEL in said and COLD in said  # what it can serve
    assert chat.status_code == 404 and chat.json()["error"]["code"] == "model_not_found"
    assert not loads(emulator) and not emulator.generations


async def test_models_say_which_are_loaded(start_lmsd, emulator):
    server = await started(start_lmsd, emulator)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        listed = (await http.get("/v1/models", params={"limit": 1000})).json()["data"]
        by_id = {m["id"]: m for m in listed}
        assert by_id[MODEL]["loaded"] is True and by_id[COLD]["loaded"] is False
        assert by_id["claude-sonnet-4-6"]["loaded"] is True  # it maps to MODEL
        assert all(m["object"] == "model" and m["type"] == "model" for m in listed)
        assert (await http.post("/v1/messages", json=body(COLD))).status_code == 200
        one = (await http.get(f"/v1/models/{COLD}")).json()
    assert one["loaded"] is True and one["context_window"] == MIN_CONTEXT
