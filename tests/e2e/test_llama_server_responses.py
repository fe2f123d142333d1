"""lmsd in front of llama-server's stateless /v1/responses: chaining refused (the full
history sent instead), the output limit, and Codex-shaped requests."""

from __future__ import annotations

import httpx
import pytest

from tests.engine.server import MODEL_ALIAS
from tests.support.llama_e2e import (
    BASH,
    anthropic_client,
    openai_client,
    user,
)

pytestmark = pytest.mark.engine

# -- llama-server's stateless /v1/responses ------------------------------------------------------


async def test_its_responses_api_refuses_chaining_and_lmsd_sends_full_history(
        start_lmsd, tool_llama):
    """With ``upstream_api = responses`` lmsd chains turn 2 with ``previous_response_id``;
    llama-server answers 400 ("does not support 'previous_response_id'"), lmsd resends the
    turn whole at once, says so once, and sends every later turn whole."""
    server = await start_lmsd(tool_llama.url, model=MODEL_ALIAS, upstream_api="responses")
    history = user("list files")
    headers = {"X-Claude-Code-Session-Id": "stateless"}
    async with anthropic_client(server) as client:
        with server.bus.subscribe(types=("upstream.chaining_unsupported", "chain")) as sub:
            for _ in range(3):
                async with client.messages.stream(
                        model="claude-sonnet-4-6", max_tokens=64, messages=history,
                        tools=[BASH], tool_choice={"type": "any"},
                        extra_headers=headers) as stream:
                    msg = await stream.get_final_message()
                [call] = [b for b in msg.content if b.type == "tool_use"]
                assert call.input["command"] in ("ls", "pwd")
                assert msg.stop_reason == "tool_use"
                history += [
                    {"role": "assistant", "content": [b.model_dump() for b in msg.content]},
                    {"role": "user", "content": [{"type": "tool_result",
                                                  "tool_use_id": call.id, "content": "ok"}]}]
            seen = [await sub.next() for _ in range(5)]
    assert [e["type"] for e in seen] == [
        "chain.decision", "chain.stale", "upstream.chaining_unsupported", "chain.decision",
        "chain.decision"]
    assert [e.get("chained") for e in seen if e["type"] == "chain.decision"] == [
        False, False, False]
    async with httpx.AsyncClient(base_url=server.admin_url) as http:
        status = (await http.get("/status")).json()["upstream"]
    assert status["api"] == "responses" and status["chaining"] is False


@pytest.mark.parametrize("stream", [False, True])
async def test_its_responses_api_at_the_output_limit_is_max_tokens(start_lmsd, llama,
                                                                   stream):
    """llama-server's /v1/responses says ``status: completed`` even when it stopped at
    ``max_output_tokens``; Claude Code must still be told ``max_tokens``."""
    server = await start_lmsd(llama.url, model=MODEL_ALIAS, upstream_api="responses")
    async with anthropic_client(server) as client:
        if stream:
            async with client.messages.stream(model="claude-sonnet-4-6", max_tokens=8,
                                              messages=user("hello there")) as answer:
                msg = await answer.get_final_message()
        else:
            msg = await client.messages.create(model="claude-sonnet-4-6", max_tokens=8,
                                               messages=user("hello there"))
    assert msg.usage.output_tokens == 8
    assert msg.stop_reason == "max_tokens"


async def test_codex_shaped_responses_through_its_responses_api(start_lmsd, llama):
    """lmsd's /v1/responses front to llama-server's /v1/responses: its events have no
    sequence_number or output_index, and it says ``completed`` at the output limit;
    lmsd's stream to the client has them all, and says ``incomplete``."""
    server = await start_lmsd(llama.url, model=MODEL_ALIAS, upstream_api="responses")
    async with openai_client(server) as client:
        events = [e async for e in await client.responses.create(
            model=MODEL_ALIAS, input="hello there", max_output_tokens=16, stream=True)]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = events[-1]
    assert done.type == "response.incomplete"
    assert done.response.incomplete_details.reason == "max_output_tokens"
    assert done.response.output_text
    assert done.response.usage.input_tokens > 0
    assert done.response.usage.output_tokens == 16
