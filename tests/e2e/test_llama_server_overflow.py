"""lmsd in front of a real llama-server whose context is too small: its overflow as each
client is told it, and the limit it stated refusing the next prompt before sending."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.engine.llama_server import start_llama_server
from tests.engine.server import MODEL_ALIAS
from tests.support.llama_e2e import (
    openai_client,
    user,
)

pytestmark = pytest.mark.engine

# -- context overflow ----------------------------------------------------------------------------


@pytest.fixture
async def small_lmsd(nursery, start_lmsd):
    engine = await start_llama_server(nursery, n_ctx=2048)
    return await start_lmsd(engine.url, model=MODEL_ALIAS)


# About 2.6k tokens: over the 2048 of context, but under the 1.5 x 2048 past which lmsd's
# own estimate would refuse it; only the engine's tokenizer can tell.
LONG = "lorem ipsum dolor sit amet " * 200


@pytest.mark.parametrize("stream", [False, True])
async def test_an_overflow_is_prompt_too_long_for_claude_code(small_lmsd, stream):
    """llama-server says ``exceed_context_size_error`` (HTTP 400, before any SSE), with
    the sizes: Claude Code gets them as its own words and compacts."""
    async with httpx.AsyncClient(base_url=small_lmsd.url, timeout=120) as http:
        response = await http.post("/v1/messages", json={
            "model": "claude-x", "max_tokens": 4, "stream": stream, "messages": user(LONG)})
        if stream:
            assert response.status_code == 200
            assert "event: error" in response.text
            message = next(json.loads(line[6:]) for line in response.text.splitlines()
                           if line.startswith("data: ") and '"error"' in line)
            message = message["error"]["message"]
        else:
            assert response.status_code == 400
            message = response.json()["error"]["message"]
        assert message.startswith("prompt is too long: ")
        assert message.endswith(" tokens > 2048 maximum")
        after = await http.post("/v1/messages", json={
            "model": "claude-x", "max_tokens": 4, "messages": user("hello")})
    assert after.status_code == 200, after.text


async def test_an_overflow_is_context_length_exceeded_for_openai_clients(small_lmsd):
    async with openai_client(small_lmsd) as client:
        with pytest.raises(openai.BadRequestError) as chat:
            await client.chat.completions.create(model="claude-x", max_tokens=4,
                                                 messages=user(LONG))
        with pytest.raises(openai.BadRequestError) as responses:
            await client.responses.create(model="claude-x", max_output_tokens=16,
                                          input=LONG)
    assert chat.value.code == responses.value.code == "context_length_exceeded"


async def test_the_limit_an_overflow_stated_refuses_the_next_one_before_sending(small_lmsd):
    async with httpx.AsyncClient(base_url=small_lmsd.url, timeout=120) as http:
        body = {"model": "claude-x", "max_tokens": 4, "messages": user(LONG)}
        with small_lmsd.bus.subscribe(types=("request.too_long",)) as sub:
            first = await http.post("/v1/messages", json=body)
            second = await http.post("/v1/messages", json=body)
            refused = await sub.next()
        async with httpx.AsyncClient(base_url=small_lmsd.admin_url) as admin:
            metrics = (await admin.get("/metrics")).text
    assert first.status_code == second.status_code == 400
    engine_count, lmsd_count = (int(r.json()["error"]["message"].split()[4]) for r in (first,
                                                                                     second))
    # lmsd counts with the engine's tokenizer, without the chat template's few tokens.
    assert engine_count - 16 <= lmsd_count <= engine_count
    assert second.json()["error"]["message"].endswith(" tokens > 2048 maximum")
    assert refused["type"] == "request.too_long"
    assert 'lmsd_context_overflows_total{front="anthropic",where="engine"} 1.0' in metrics
    assert 'lmsd_context_overflows_total{front="anthropic",where="before_sending"} 1.0' \
        in metrics
