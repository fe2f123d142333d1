"""What the engine prefilled, per turn, end to end: the emulator as llama-server (its
``timings`` on chat, its cache reads on /v1/messages) and as LM Studio, two turns of one
conversation, then ``request.end``, the admin ``/sessions`` and the metrics."""

from __future__ import annotations

import anthropic
import pytest

from tests.emulator import Reply, Text
from tests.support.conversation import Conversation
from tests.support.daemon import admin_get

SESSION = "prefill-1"
PREFILL_SECONDS_PER_TOKEN = 1e-5  # the emulator reports what it spends: prompt_ms


def like_llama_server(emulator, messages: bool) -> None:
    """llama-server answers /props; with ``messages`` a build with /v1/messages (which
    ``auto`` picks), else an older one that speaks chat only."""
    emulator.lmstudio_api, emulator.llama_server = False, True
    emulator.messages_flavor = "llama_server" if messages else "none"
    emulator.usage_mode = "openai"  # its usage counts the whole prompt, cached included
    emulator.prefill_seconds_per_token = PREFILL_SECONDS_PER_TOKEN


async def two_turns(server, emulator) -> list[dict]:
    emulator.script(Reply(Text("first answer")), Reply(Text("second answer")))
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="x",
                                        max_retries=0) as client:
        chat = Conversation(client, session=SESSION, tools=[])
        await chat.send("hello there, " * 20)
        await chat.send("and now?")
    ends = [e for e in server.bus.recent if e["type"] == "request.end"]
    assert len(ends) == 2 and all(e["outcome"] == "ok" for e in ends)
    return ends


async def session_agent(server) -> dict:
    [agent] = (await admin_get(server, f"/sessions/{SESSION}")).json()["agents"]
    return agent


def sample(metrics: str, name: str, upstream: str) -> float:
    line = next(x for x in metrics.splitlines() if x.startswith(f'{name}{{upstream="{upstream}"}}'))
    return float(line.rsplit(" ", 1)[1])


@pytest.mark.parametrize("messages", [False, True], ids=["chat", "messages"])
async def test_llama_server_turns_say_what_was_prefilled_and_cached(start_lmsd, emulator,
                                                                   messages):
    like_llama_server(emulator, messages)
    server = await start_lmsd(emulator.url)
    dialect = await server.router.backends[0].dialect()
    assert dialect.name == ("messages" if messages else "chat")
    first, second = await two_turns(server, emulator)
    path = "/v1/messages" if messages else "/v1/chat/completions"
    cold, warm = [r for r in emulator.log if r.path == path]
    assert cold.cached_tokens == 0 and warm.cached_tokens > 0  # the emulator's cache
    for end, record in ((first, cold), (second, warm)):
        assert end["prefilled_tokens"] == record.input_tokens - record.cached_tokens
        assert end["cached_tokens"] == record.cached_tokens
        if messages:  # its /v1/messages has no timings
            assert "prefill_ms" not in end
        else:
            assert end["prefill_ms"] == round(
                PREFILL_SECONDS_PER_TOKEN * end["prefilled_tokens"] * 1000, 1)
    assert second["prefilled_tokens"] < first["prefilled_tokens"] / 2
    assert second["cached_tokens"] >= first["prefilled_tokens"] - 1

    agent = await session_agent(server)
    assert agent["turns"] == 2
    assert agent["prefilled_tokens"] == first["prefilled_tokens"] + second["prefilled_tokens"]
    assert agent["cached_tokens"] == second["cached_tokens"]
    last = agent["last_turn"]
    assert (last["prefilled_tokens"], last["cached_tokens"], last["prefill_ms"]) == (
        second["prefilled_tokens"], second["cached_tokens"], second.get("prefill_ms"))
    assert last["at"] == agent["last_used"]

    metrics = (await admin_get(server, "/metrics")).text
    upstream = second["upstream"]
    assert sample(metrics, "lmsd_prefilled_tokens_total", upstream) == agent["prefilled_tokens"]
    assert sample(metrics, "lmsd_cached_tokens_total", upstream) == agent["cached_tokens"]
    if not messages:
        assert sample(metrics, "lmsd_prefill_seconds_count", upstream) == 2


@pytest.mark.parametrize("usage_mode", ["lmstudio", "openai"])
async def test_lm_studio_says_cached_only_when_it_counts_some(start_lmsd, emulator,
                                                             usage_mode):
    """LM Studio's /v1/responses: its cached count may stick at 0 (lms#553, the
    emulator's ``lmstudio`` usage), so a 0 says nothing and nothing is reported; a
    positive count is, with the input's uncached rest as what was prefilled."""
    emulator.usage_mode = usage_mode
    server = await start_lmsd(emulator.url)
    first, second = await two_turns(server, emulator)
    for end in (first, second):
        assert "prefill_ms" not in end
    assert "prefilled_tokens" not in first and "cached_tokens" not in first
    agent = await session_agent(server)
    if usage_mode == "lmstudio":
        assert "prefilled_tokens" not in second and "cached_tokens" not in second
        assert (agent["prefilled_tokens"], agent["cached_tokens"]) == (0, 0)
        assert agent["last_turn"]["prefilled_tokens"] is None
        assert agent["last_turn"]["cached_tokens"] is None
        return
    warm = emulator.generations[1]
    assert second["cached_tokens"] == warm.cached_tokens > 0
    assert second["prefilled_tokens"] == warm.input_tokens - warm.cached_tokens
    assert agent["last_turn"]["cached_tokens"] == warm.cached_tokens
