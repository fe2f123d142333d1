"""lmsd's own traffic never cuts an answer short, and a busy engine is not a down one.

llama-cpp-python's server has one lock around every endpoint it has: by default
(``interrupt_requests``) a request that waits for it ends the answer being streamed
with a bare ``[DONE]``; with ``--interrupt_requests false`` the request waits, so a
listing times out while an answer streams. The emulator does both
(``Emulator.one_at_a_time``); lmsd polls every 0.05 s here, while a turn lasts far longer.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from lmsd.upstreams import watcher
from tests.emulator import Emulator
from tests.emulator.app import serve_emulator
from tests.emulator.script import Reply, Text
from tests.support.boxes import Box

LONG = "word " * 60  # 75 chunks of 4 characters
UNFINISHED = "the engine ended the answer without finishing it (no output, no finish reason)"


async def engine(nursery: trio.Nursery, mode: str, *, owned_by: str) -> Emulator:
    """A llama-cpp-python-like server: one lock, no LM Studio API, a slow answer."""
    emu = Emulator(token_delay=0.02)
    emu.lmstudio_api = False
    emu.one_at_a_time = mode  # type: ignore[assignment]
    emu.owned_by = owned_by
    emu.url = await serve_emulator(nursery, emu)  # type: ignore[attr-defined]
    return emu


async def start(start_lmsd: Any, emu: Emulator) -> Any:
    server = await start_lmsd(emu.url, upstream_api="chat",  # type: ignore[attr-defined]
                              poll_interval="0.05")
    backend = server.router.backends[0]
    with trio.fail_after(10):
        while not backend.watcher.polls:
            await trio.sleep(0.01)
    return server


async def long_turn(server: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        answer = await http.post("/v1/messages", json={
            "model": "claude-x", "max_tokens": 400,
            "messages": [{"role": "user", "content": "write a lot"}]})
    assert answer.status_code == 200, answer.text
    return answer.json()


def kinds(server: Any) -> set[str]:
    return {e["type"] for e in server.bus.recent}


async def test_polls_never_interrupt_an_answer_on_llama_cpp_python(start_lmsd, nursery):
    """Known by its listing (``owned_by: "me"``), it is not polled while it answers: the
    answer comes whole; before, the first poll during the turn cut it to nothing."""
    emu = await engine(nursery, "interrupt", owned_by="me")
    server = await start(start_lmsd, emu)
    backend = server.router.backends[0]
    emu.script(Reply(Text(LONG)))
    ready: list[int] = []

    async def readyz_during_the_turn() -> None:  # a health check asks while it answers
        await wait_for(lambda: backend.upstream.busy)
        async with httpx.AsyncClient(base_url=server.admin_url) as admin:
            ready.append((await admin.get("/readyz")).status_code)

    async with trio.open_nursery() as both:
        both.start_soon(readyz_during_the_turn)
        message = await long_turn(server)
    assert ready == [200]
    assert emu.interrupted == 0
    assert message["content"][0]["text"] == LONG
    assert message["stop_reason"] == "end_turn"
    assert backend.upstream.one_at_a_time is not None
    assert backend.watcher.busy_polls > 0  # polls fell due during the turn, none was sent
    assert not {"upstream.down", "upstream.out", "cache.lost"} & kinds(server)


async def test_a_listing_unanswered_while_serving_is_busy_not_down(start_lmsd, nursery,
                                                                     monkeypatch):
    """An engine that queues the listing behind the answer (``--interrupt_requests
    false``), not known by its listing: a poll that times out while lmsd's request runs
    there says busy, and teaches lmsd not to poll it while busy. No "down", no breaker
    failure, no "restarted" re-warm when it answers again."""
    monkeypatch.setattr(watcher, "POLL_TIMEOUT", 0.2, raising=False)
    emu = await engine(nursery, "queue", owned_by="organization_owner")
    server = await start(start_lmsd, emu)
    backend = server.router.backends[0]
    emu.script(Reply(Text(LONG)))
    message = await long_turn(server)
    assert message["content"][0]["text"] == LONG
    polls = backend.watcher.polls
    with trio.fail_after(10):
        while backend.watcher.polls < polls + 2:  # idle again: polled as before
            await trio.sleep(0.01)
    assert not {"upstream.down", "upstream.out", "cache.lost"} & kinds(server)
    assert backend.keeper.counts["lost"] == 0
    assert backend.watcher.reachable is True
    assert backend.breaker.state == "closed" and backend.breaker.consecutive == 0
    assert backend.upstream.one_at_a_time is not None  # learned from the unanswered poll
    assert backend.watcher.busy_polls > 0


async def test_two_turns_at_once_wait_for_each_other_on_llama_cpp_python(start_lmsd,
                                                                          nursery):
    """Claude Code sends a side request (a title) while the main turn runs: on an engine
    where the second request would end the first, lmsd sends them in turn."""
    emu = await engine(nursery, "interrupt", owned_by="me")
    server = await start(start_lmsd, emu)
    emu.script(Reply(Text(LONG)), Reply(Text(LONG)))
    answers: list[dict[str, Any]] = []

    async def turn() -> None:
        answers.append(await long_turn(server))

    async with trio.open_nursery() as both:
        both.start_soon(turn)
        both.start_soon(turn)
    assert emu.interrupted == 0
    assert [a["content"][0]["text"] for a in answers] == [LONG, LONG]


@pytest.mark.parametrize("front", ["messages", "chat", "responses"])
async def test_an_answer_ended_with_nothing_is_an_error_on_every_front(start_lmsd, nursery,
                                                                       front):
    """A chat stream of a role chunk and ``[DONE]`` (no output, no finish reason) is an
    error to the client on every front, never an empty success."""
    emu = await engine(nursery, "interrupt", owned_by="me")
    server = await start(start_lmsd, emu)
    emu.unfinished_streams = 1
    model = next(key for key, spec in emu.models.items() if spec.loaded)
    path, body = {
        "messages": ("/v1/messages", {"model": "claude-x", "max_tokens": 50, "stream": True,
                                      "messages": [{"role": "user", "content": "hi"}]}),
        "chat": ("/v1/chat/completions", {"model": model, "stream": True,
                                          "messages": [{"role": "user", "content": "hi"}]}),
        "responses": ("/v1/responses", {"model": model, "stream": True,
                                        "input": "hi"}),
    }[front]
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        answer = await http.post(path, json=body)
    text = answer.text
    assert UNFINISHED in text, text
    if answer.status_code == 200:  # the error arrived in the stream
        assert "error" in text
    else:
        assert answer.status_code >= 500
    assert '"end_turn"' not in text and '"stop"' not in text and "response.completed" \
        not in text


async def test_only_an_engine_that_refused_connections_comes_back_restarted(
        start_lmsd, nursery, monkeypatch):
    """A listing that times out while someone else's request holds the engine says
    nothing of its cache: when it answers again, nothing is re-warmed. An engine whose
    port refused connections and then answers did restart: its cache is re-warmed."""
    monkeypatch.setattr(watcher, "POLL_TIMEOUT", 0.2, raising=False)
    emu = Emulator(token_delay=0.02)
    emu.lmstudio_api, emu.one_at_a_time = False, "queue"
    box = Box(nursery, emu, "a")
    emu.url = await box.start()  # type: ignore[attr-defined]
    server = await start(start_lmsd, emu)
    backend = server.router.backends[0]
    model = next(key for key, spec in emu.models.items() if spec.loaded)
    emu.script(Reply(Text(LONG)))
    async with httpx.AsyncClient(base_url=box.url, timeout=30) as other:  # not through lmsd
        answer = await other.post("/v1/chat/completions", json={
            "model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert answer.status_code == 200
    await wait_for(lambda: backend.watcher.reachable)  # answered again after the stream
    assert "upstream.down" in kinds(server)  # lmsd cannot tell it from a hung engine
    assert "cache.lost" not in kinds(server)
    await box.stop()
    await wait_for(lambda: backend.watcher.reachable is False)
    await box.restart()
    await wait_for(lambda: backend.watcher.reachable)
    [lost] = [e for e in server.bus.recent if e["type"] == "cache.lost"]
    assert "restarted" in lost["why"]


async def wait_for(check: Any) -> None:
    with trio.fail_after(10):
        while not check():
            await trio.sleep(0.01)
