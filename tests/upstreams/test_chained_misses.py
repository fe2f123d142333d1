"""A miss is judged against what the engine could have cached. On a chained Responses
turn the engine holds the stored response's context; the instructions and tools resent
with each request are prefilled again by design (LM Studio as seen in the field): a long
chained Claude Code session reports no ``cache.miss``, an engine that lost the context
still does."""

from __future__ import annotations

import anthropic

from lmsd.protocol.pivot import Usage
from lmsd.protocol.servers.prefill import expected_prefill
from lmsd.upstreams.cache.misses import MISS_TOKENS, Misses
from tests.support.conversation import Conversation, tool_turns

#: Claude Code-sized tool definitions: well over a miss's worth of tokens, resent each turn.
TOOLS = [{"name": f"Tool{n}", "description": "Does one thing well. " * 80,
          "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}
         for n in range(12)]


def test_the_expected_prefill_of_a_chained_turn_is_what_it_resends():
    body = {"previous_response_id": "resp_1", "instructions": "x" * 3500,
            "tools": [{"name": "t", "description": "y" * 3450}],
            "input": [{"type": "function_call_output", "call_id": "c", "output": "z" * 340}]}
    expected = expected_prefill(body)
    assert expected is not None and 2000 < expected < 2200
    assert expected_prefill({**body, "previous_response_id": None}) is None
    assert expected_prefill({"input": []}) is None


def test_a_chained_turn_that_prefilled_what_it_resent_is_no_miss():
    misses = Misses("u")
    misses.turn("s/main", Usage(input_tokens=5000, prefilled_tokens=5000))  # cold: first
    resent = Usage(input_tokens=9000, cached_tokens=4000, prefilled_tokens=5000)
    misses.turn("s/main", resent, expected=4500)  # instructions, tools and new items
    assert misses.count == 0
    misses.turn("s/main", resent)  # the same figures on a full-history turn: a miss
    assert misses.count == 1
    lost = Usage(input_tokens=9000, cached_tokens=0, prefilled_tokens=9000)
    misses.turn("s/main", lost, expected=4500)  # the stored context was prefilled again
    assert misses.count == 2
    assert MISS_TOKENS == 1024


async def test_a_long_chained_session_reports_no_miss_and_a_lost_context_does(
        start_lmsd, emulator):
    emulator.usage_mode = "openai"  # input_tokens counts the whole prompt, cached given
    emulator.chained_resends_prefilled = True
    emulator.script(*tool_turns(11))
    server = await start_lmsd(emulator.url)
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="x",
                                        max_retries=0) as client:
        chat = Conversation(client, session="chained-1", tools=TOOLS)
        await chat.send("fix the bug in this file:\n" + "x = compute(y) + 1\n" * 300)
        for _ in range(9):
            await chat.send()  # the tool results
        sent = emulator.generations
        assert len(sent) == 10 and all(r.previous_response_id for r in sent[1:])
        for r in sent[1:]:  # each chained turn prefilled its tools again: more than the
            resent = r.input_tokens - r.cached_tokens  # cache held, a miss's worth
            assert resent > max(r.cached_tokens, MISS_TOKENS)
        assert [e for e in server.bus.recent if e["type"] == "cache.miss"] == []
        for key, tokens in emulator.prefix_cache.items():  # another conversation took the
            emulator.prefix_cache[key] = tokens[:20]  # engine's cache: its start is left
        await chat.send()
    assert emulator.generations[-1].previous_response_id  # still chained
    [miss] = [e for e in server.bus.recent if e["type"] == "cache.miss"]
    last = emulator.generations[-1]
    assert miss["prefilled_tokens"] == last.input_tokens - last.cached_tokens
    assert miss["cached_tokens"] == 20
    assert miss["expected_tokens"] < miss["prefilled_tokens"] - MISS_TOKENS
