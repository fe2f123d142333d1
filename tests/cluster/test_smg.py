"""lmsd in front of a real cluster gateway: SGLang's model gateway (SMG) over two real
llama-servers. lmsd hands SMG the session key (``x-smg-routing-key``: the session, or
``session/agent`` for a subagent); SMG pins each key to a worker. Shown from the
gateway's own count of requests per worker and from each engine's own count of the
tokens it prefilled: after the first turn a conversation prefills only what is new.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx
import pytest
import trio

from tests.engine.llama_server import MODEL_ALIAS
from tests.support.daemon import admin_get

from .gateway import Gateway, prefilled

pytestmark = pytest.mark.engine

SYSTEM = "You are a coding agent working through a cluster gateway. " * 50  # ~600 tokens


@dataclass
class Turn:
    """One turn as the gateway and the engines saw it."""

    workers: dict[str, int]  # requests the gateway sent to each worker during the turn
    prefilled: dict[str, int]  # tokens each engine prefilled during the turn
    cached: int  # what lmsd's answer says was read from the cache

    @property
    def worker(self) -> str:
        [only] = [w for w, n in self.workers.items() if n]
        return only


@dataclass
class Chat:
    """A short Claude-Code-shaped conversation (a long system prompt of its own, a few
    words a turn, 8 tokens of answer); ``agent``: a subagent's, with its own key."""

    client: anthropic.AsyncAnthropic
    session: str
    agent: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)

    async def turn(self, text: str) -> Any:
        self.history.append({"role": "user", "content": text})
        headers = {"X-Claude-Code-Session-Id": self.session}
        if self.agent:
            headers["x-claude-code-agent-id"] = self.agent
        msg = await self.client.messages.create(
            model="claude-sonnet-4-6", max_tokens=8, messages=self.history,
            system=f"Agent {self.agent or 'main'} of {self.session}. {SYSTEM}",
            extra_headers=headers)
        self.history.append({"role": "assistant", "content": [
            b.model_dump(exclude_none=True) for b in msg.content] or "ok"})
        return msg


async def observed(http: httpx.AsyncClient, gateway: Gateway, engines: list[Any],
                   chat: Chat, text: str) -> Turn:
    """Send one turn and read what the gateway and the engines counted meanwhile."""
    requests0 = await gateway.worker_requests(http)
    tokens0 = {e.url: await prefilled(http, e.url) for e in engines if e.process.returncode
               is None}
    msg = await chat.turn(text)
    requests1 = await gateway.worker_requests(http)
    tokens1 = {url: await prefilled(http, url) for url in tokens0}
    return Turn({w: requests1[w] - requests0[w] for w in requests0},
                {u: tokens1[u] - tokens0[u] for u in tokens0},
                msg.usage.cache_read_input_tokens or 0)


async def lmsd_over(start_lmsd: Any, gateway: Gateway, kind: str) -> Any:
    return await start_lmsd(gateway.url, model=MODEL_ALIAS, poll_interval="1", upstreams=[
        {"name": "cluster", "url": gateway.url, "kind": kind, "gateway": "smg"}])


@pytest.mark.parametrize("kind", ["chat", "messages", "responses"])
async def test_the_gateway_pins_each_session_key_to_a_worker(
        start_lmsd, engines, gateway, kind):
    server = await lmsd_over(start_lmsd, gateway, kind)
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="x", max_retries=0,
                                        timeout=120) as client, httpx.AsyncClient() as http:
        chats = [Chat(client, "s-one"), Chat(client, "s-two"),
                 Chat(client, "s-one", agent="explore-1")]  # a subagent: s-one/explore-1
        turns: dict[str, list[Turn]] = {c.session + c.agent: [] for c in chats}
        for n in range(3):
            for chat in chats:
                turns[chat.session + chat.agent].append(
                    await observed(http, gateway, engines, chat, f"step {n} of {chat.agent}"))
        branches = await gateway.manual_branches(http)
    for key, seen in turns.items():
        # one request per turn, on one worker: the same one every turn
        assert all(sum(t.workers.values()) == 1 for t in seen), (key, seen)
        assert len({t.worker for t in seen}) == 1, (key, [t.worker for t in seen])
        # only that worker's engine prefilled; the first turn the whole prompt, later
        # turns only what is new (the engine's own count), the rest read from its cache
        for t in seen:
            assert {u for u, n in t.prefilled.items() if n} == {t.worker}, (key, t)
        first, *later = (t.prefilled[t.worker] for t in seen)
        # later: the new words and the last answer again where the tiny model's random
        # tokens re-tokenize longer as text (seen: 94); a miss would be the whole prompt
        assert first > 500 and all(n < first // 4 for n in later), (key, first, later)
        assert all(t.cached > 500 for t in seen[1:]), (key, [t.cached for t in seen])
    # the gateway read three keys from lmsd's header (session, session, session/agent),
    # placed each once and found it on its worker every later turn
    assert branches == {"vacant": 3, "occupied_hit": 6}, branches
    listed = (await admin_get(server, "/upstreams")).json()["upstreams"]
    assert listed[0]["gateway"] == {"name": "smg",
                                    "key_headers": server.settings.affinity_headers}
    assert listed[0]["api"] == kind and listed[0]["cache"]["enabled"] is False


async def test_a_dead_worker_moves_the_key_and_the_next_turn_just_works(
        start_lmsd, engines, gateway):
    server = await lmsd_over(start_lmsd, gateway, "chat")
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="x", max_retries=0,
                                        timeout=120) as client, httpx.AsyncClient() as http:
        chat = Chat(client, "s-one")
        before = [await observed(http, gateway, engines, chat, f"step {n}") for n in range(2)]
        holder = before[0].worker
        assert before[1].worker == holder and \
            before[1].prefilled[holder] < before[0].prefilled[holder] // 4  # a hit
        victim = next(e for e in engines if e.url == holder)
        survivor = next(e for e in engines if e.url != holder)
        starts = sum(1 for e in server.bus.recent if e["type"] == "request.start")
        await victim.kill()  # mid-session, without telling anyone
        moved = await observed(http, gateway, engines, chat, "after the kill")
        # no client error; lmsd sent it once; the survivor prefilled it in full, once
        assert sum(1 for e in server.bus.recent if e["type"] == "request.start") == starts + 1
        assert moved.prefilled == {survivor.url: moved.prefilled[survivor.url]}
        assert moved.prefilled[survivor.url] > 500 and moved.cached == 0
        # the gateway's view: the survivor served it (after one refused attempt at the
        # dead worker, when the gateway's health check had not yet seen it die)
        assert moved.workers[survivor.url] == 1 and moved.workers[victim.url] in (0, 1)
        with trio.fail_after(30):  # the gateway's health check drops the dead worker
            while (await gateway.healthy(http))[victim.url]:
                await trio.sleep(0.2)
        again = await observed(http, gateway, engines, chat, "and again")
        assert again.workers == {survivor.url: 1, victim.url: 0}
        assert again.cached > 500 and again.prefilled[survivor.url] < again.cached // 4
        # the gateway moved the key once (its worker unhealthy: a new one, kept)
        assert (await gateway.manual_branches(http))["occupied_miss"] == 1
    backend = server.router.backends[0]
    assert backend.breaker.state == "closed" and backend.breaker.consecutive == 0
    failed = [e["type"] for e in server.bus.recent if e["type"] in (
        "upstream.failover", "upstream.out", "request.failed")]
    assert failed == []
    listed = (await admin_get(server, "/upstreams")).json()["upstreams"]
    assert listed[0]["in_rotation"] and listed[0]["health"]["state"] == "closed"
