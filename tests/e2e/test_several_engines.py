"""Several upstreams on real engines: two llama-server processes behind one lmsd.

Each engine has one slot, so a conversation's prefix stays cached only on the engine it
is pinned to: what lmsd's placement saves shows in the engines' own cache counts. Killing
the engine that holds a live Claude Code session lets the real CLI finish on the other.
"""

from __future__ import annotations

import uuid
from typing import Any

import anthropic
import pytest
import trio

from tests.engine.llama_server import MODEL_ALIAS, start_llama_server
from tests.support.claude_cli import run_claude
from tests.support.daemon import admin_get

pytestmark = pytest.mark.engine
SYSTEM = "You are a coding agent on a local engine. " * 60  # a prefix worth caching


@pytest.fixture
async def engines(nursery: trio.Nursery) -> list[Any]:
    return [await start_llama_server(nursery, n_ctx=8192) for _ in range(2)]


async def start_over(start_lmsd: Any, engines: list[Any], **settings: Any) -> Any:
    kind = settings.pop("kind", "chat")
    entries = [{"name": f"e{n + 1}", "url": e.url, "kind": kind}
               for n, e in enumerate(engines)]
    settings.setdefault("poll_interval", "0.2")
    return await start_lmsd(engines[0].url, upstreams=entries, model=MODEL_ALIAS,
                            **settings)


class Chat:
    """A short Claude-Code-shaped conversation: a long stable system prompt, a few words
    per turn, 8 tokens of answer (the tiny model's words are gibberish)."""

    def __init__(self, client: anthropic.AsyncAnthropic, session: str) -> None:
        self.client, self.session = client, session
        self.history: list[dict[str, Any]] = []

    async def turn(self, text: str) -> Any:
        self.history.append({"role": "user", "content": text})
        msg = await self.client.messages.create(
            model="claude-sonnet-4-6", max_tokens=8, system=SYSTEM, messages=self.history,
            extra_headers={"X-Claude-Code-Session-Id": self.session})
        self.history.append({"role": "assistant", "content": [
            b.model_dump(exclude_none=True) for b in msg.content] or "ok"})
        return msg


def upstream_of(server: Any, session: str) -> str | None:
    return next(v.upstream for k, v in server.store.stats.items() if k[0] == session)


async def test_two_engines_keep_each_session_on_its_cache_and_survive_a_kill(
        start_lmsd, engines):
    server = await start_over(start_lmsd, engines)
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="x",
                                        max_retries=0, timeout=120) as client:
        one, two = Chat(client, "s-one"), Chat(client, "s-two")
        cached: dict[str, list[int]] = {"s-one": [], "s-two": []}
        for n in range(3):
            for chat in (one, two):
                msg = await chat.turn(f"step {n}")
                cached[chat.session].append(msg.usage.cache_read_input_tokens or 0)
        assert {upstream_of(server, "s-one"), upstream_of(server, "s-two")} == {"e1", "e2"}
        for session, counts in cached.items():  # turns 2+ hit the engine's prefix cache
            assert counts[0] == 0 and all(c > 500 for c in counts[1:]), (session, counts)
        victim = engines[0] if upstream_of(server, "s-one") == "e1" else engines[1]
        await victim.kill()
        answer = await one.turn("after the kill")  # no error reaches the client
        assert answer.stop_reason in ("end_turn", "max_tokens")
        assert upstream_of(server, "s-one") == upstream_of(server, "s-two")
        again = await one.turn("and again")
        assert (again.usage.cache_read_input_tokens or 0) > 0  # cached on its new engine
        await victim.restart()
        name = "e1" if victim is engines[0] else "e2"
        with trio.fail_after(30):
            while server.router.backend(name).breaker.state != "closed":
                await trio.sleep(0.05)
        await Chat(client, "s-three").turn("hello")  # the least loaded: the rejoined one
        assert upstream_of(server, "s-three") == name
    listed = {u["name"]: u for u in (await admin_get(server, "/upstreams")).json()[
        "upstreams"]}
    assert listed[name]["health"]["trips"] >= 1 and listed[name]["in_rotation"]


@pytest.mark.cli
async def test_claude_code_finishes_on_the_other_engine_when_its_engine_dies(
        start_lmsd, nursery, tmp_path):
    engines = [await start_llama_server(nursery, n_ctx=32768) for _ in range(2)]
    # the engines' own /v1/messages; no active check, so the request finds the dead one
    server = await start_over(start_lmsd, engines, kind="messages", poll_interval="60",
                              max_tokens_cap="16")
    (tmp_path / "tmp").mkdir()
    env = {"ANTHROPIC_MODEL": "claude-sonnet-4-6", "TMPDIR": str(tmp_path / "tmp")}
    session = str(uuid.uuid4())
    first = await run_claude(server.url, "say hello", home=tmp_path / "home", cwd=tmp_path,
                             allowed_tools=(), extra_args=["--session-id", session],
                             extra_env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:] + first.stdout[-2000:]
    holder = upstream_of(server, session)
    victim = engines[0] if holder == "e1" else engines[1]
    await victim.kill()
    second = await run_claude(server.url, "say it again", home=tmp_path / "home",
                              cwd=tmp_path, allowed_tools=(),
                              extra_args=["--resume", session], extra_env=env,
                              timeout=300)
    assert second.returncode == 0, second.stderr[-2000:] + second.stdout[-2000:]
    assert second.result and not second.result.get("is_error"), second.stdout[-2000:]
    assert "API Error" not in second.stdout + second.stderr
    assert upstream_of(server, session) not in (None, holder)
    failovers = [e for e in server.bus.recent if e["type"] == "upstream.failover"]
    assert failovers and failovers[-1]["failed"] == holder
    listed = {u["name"]: u for u in (await admin_get(server, "/upstreams")).json()[
        "upstreams"]}
    assert {u["api"] for u in listed.values()} == {"messages"}
    assert listed[holder]["health"]["state"] == "open"  # taken out (probed after cooldown)
    assert listed[holder]["health"]["trips"] == 1
