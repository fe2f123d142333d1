"""A streamed answer's headers and ``message_start`` go out before lmsd waits for anything:
a model reload, a slow slot restore, a failover away from a hanging upstream. Claude Code
2.1.337 resends a request whose headers are late (``CLAUDE_STREAM_FIRST_BYTE_TIMEOUT_MS``),
and every resend is a second prefill. Each test holds the wait open until it has seen the
headers, then releases it: no timing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

from tests.support.boxes import boxes, upstreams
from tests.support.daemon import MODEL

BODY = {"model": "claude-sonnet-4-6", "max_tokens": 10, "stream": True,
        "messages": [{"role": "user", "content": "hello"}]}


async def first_event(lines: AsyncIterator[str]) -> str:
    """The first SSE event's name."""
    async for line in lines:
        if line.startswith("event: "):
            return line.removeprefix("event: ")
    raise AssertionError("the stream ended before any event")


async def rest(lines: AsyncIterator[str]) -> list[str]:
    return [line.removeprefix("event: ") async for line in lines if line.startswith("event: ")]


async def wait_until(check: Any) -> None:
    with trio.fail_after(10):
        while not check():
            await trio.sleep(0.01)


async def test_headers_go_out_while_a_model_reload_is_held(start_lmsd, emulator):
    emulator.models[MODEL].context_length = 4096  # the watcher raises it: a reload
    emulator.load_gate = gate = trio.Event()
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.1",
                              ping_interval="0.1")
    watcher = server.router.backends[0].watcher
    await wait_until(lambda: watcher.reloading(MODEL))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http, \
            http.stream("POST", "/v1/messages", json=BODY) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        assert await first_event(lines) == "message_start"
        assert watcher.reloading(MODEL) and not emulator.generations  # still waiting
        gate.set()
        events = await rest(lines)
    assert events[-1] == "message_stop"
    assert len(emulator.generations) == 1


async def test_headers_go_out_while_a_slot_restore_is_held(start_lmsd, emulator):
    server = await start_lmsd(emulator.url)
    keeper = server.router.backends[0].keeper
    gate, entered = trio.Event(), trio.Event()

    @asynccontextmanager
    async def slow_restore(conversation: str, body: dict[str, Any], full: dict[str, Any],
                           **_: Any) -> AsyncIterator[dict[str, Any]]:
        entered.set()
        await gate.wait()  # llama-server restoring a slot file
        yield body

    keeper.turn = slow_restore
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http, \
            http.stream("POST", "/v1/messages", json=BODY) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        assert await first_event(lines) == "message_start"
        await entered.wait()
        assert not emulator.generations  # the restore holds the request
        gate.set()
        events = await rest(lines)
    assert events[-1] == "message_stop"
    assert len(emulator.generations) == 1


async def test_headers_go_out_while_the_first_upstream_hangs_before_failover(
        start_lmsd, nursery):
    from tests.emulator.script import Fault

    a, b = await boxes(nursery, "a", "b")
    server = await start_lmsd(a.url, upstreams=upstreams(a, b), poll_interval="60")
    await wait_until(lambda: all(x.watcher.polls for x in server.router.backends))
    a.emu.inject(Fault.hang())  # a fresh session goes to the first upstream, a
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http, \
            http.stream("POST", "/v1/messages", json=BODY,
                        headers={"x-session-id": "s-hang"}) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        assert await first_event(lines) == "message_start"
        await wait_until(lambda: a.generations())
        assert not b.generations()  # no failover yet: a still hangs
        await a.stop()  # its connection breaks: lmsd moves the request to b
        events = await rest(lines)
    assert events[-1] == "message_stop", events
    assert len(b.generations()) == 1 and "message_start" not in events  # sent once


async def test_a_busy_tokenizer_does_not_hold_the_headers(start_lmsd, emulator):
    """A close call asks the engine's tokenizer; an engine that holds it (one lock, a slot
    being restored) no longer holds the headers with it: the estimate decides instead."""
    emulator.lmstudio_api = False  # a llama-server: it counts tokens
    emulator.messages_flavor = "llama_server"
    emulator.models[MODEL].context_length = 400
    server = await start_lmsd(emulator.url)
    too_long = " ".join(["abc"] * 450)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        first = await http.post("/v1/messages", json={  # teaches lmsd the limit
            **BODY, "stream": False, "messages": [{"role": "user", "content": too_long}]})
        assert first.status_code == 400
        emulator.count_gate = gate = trio.Event()
        close_call = {**BODY, "messages": [{"role": "user",
                                            "content": " ".join(["abc"] * 320)}]}
        async with http.stream("POST", "/v1/messages", json=close_call) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            assert await first_event(lines) == "message_start"
            gate.set()
            events = await rest(lines)
    assert events[-1] == "message_stop", events
    [skipped] = [e for e in server.bus.recent if e["type"] == "request.count_skipped"]
    assert skipped["model"] == MODEL
