"""The LM Studio emulator's context overflow: each wording, in each transport."""

from __future__ import annotations

import json

import openai
import pytest

from tests.emulator import (
    ModelSpec,
    Reply,
    Text,
)
from tests.support.emulator_sdk import (
    MODEL,
    Start,
    collect,
    message_of,
)

# -- context overflow --------------------------------------------------------------------------


def small() -> list[ModelSpec]:
    return [ModelSpec(MODEL, context_length=20)]


LONG_INPUT = "word " * 50


async def test_overflow_http400(start: Start) -> None:
    """LM Studio's wording carries no code: only the words say it is an overflow."""
    emu, client, _ = await start(models=small())
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model=MODEL, input=LONG_INPUT)
    assert info.value.code is None
    n = emu.log[-1].input_tokens
    assert message_of(info.value).startswith(
        f"Trying to keep the first {n} tokens when context the"
    )
    assert "loaded with context length of only 20 tokens" in message_of(info.value)


async def test_overflow_http500(start: Start) -> None:
    emu, client, _ = await start(models=small(), overflow_mode="http500",
                                 overflow_wording="lmstudio_0425")
    with pytest.raises(openai.InternalServerError) as info:
        await client.responses.create(model=MODEL, input=LONG_INPUT)
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "internal_error"
    n = emu.log[-1].input_tokens
    assert f"(n_keep: {n} >= n_ctx: 20)" in body["message"]
    assert emu.log[-1].outcome == "error"


async def test_overflow_stream_error(start: Start) -> None:
    """LM Studio's SSE error event holds the whole error body, JSON-encoded, in message."""
    emu, client, _ = await start(models=small(), overflow_mode="stream_error")
    emu.script(Reply(Text("unused")))
    events = await collect(
        await client.responses.create(model=MODEL, input=LONG_INPUT, stream=True)
    )
    assert [e.type for e in events] == ["response.created", "error"]
    inner = json.loads(events[1].message)
    assert "context length of only 20 tokens" in inner["error"]["message"]
    assert emu.log[-1].outcome == "error" and emu.pending_replies == 1


async def test_overflow_response_failed(start: Start) -> None:
    emu, client, _ = await start(models=small(), overflow_mode="response_failed",
                                 overflow_wording="lmstudio_n_keep")
    events = await collect(
        await client.responses.create(model=MODEL, input=LONG_INPUT, stream=True)
    )
    assert [e.type for e in events][-1] == "response.failed"
    n = emu.log[-1].input_tokens
    assert events[-1].response.error.message == \
        f"Cannot truncate prompt with n_keep ({n}) >= n_ctx (20)"


@pytest.mark.parametrize(("wording", "words"), [
    ("lmstudio", "Trying to keep the first {n} tokens"),
    ("lmstudio_n_keep", "n_keep ({n}) >= n_ctx (20)"),
    ("lmstudio_0425", "(n_keep: {n} >= n_ctx: 20)"),
    ("llama_server", "request ({n} tokens) exceeds the available context size (20 tokens)"),
    ("openai", "maximum context length is 20 tokens. However, you requested {n} tokens"),
    ("vllm", "maximum context length is 20 tokens. However, your request has {n} input"),
])
async def test_every_overflow_wording(start: Start, wording: str, words: str) -> None:
    emu, client, _ = await start(models=small(), overflow_wording=wording)
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model=MODEL, input=LONG_INPUT)
    assert words.format(n=emu.log[-1].input_tokens) in str(info.value.body)
    if wording == "llama_server":
        assert isinstance(info.value.body, dict)
        assert info.value.body["type"] == "exceed_context_size_error"
        assert info.value.body["n_ctx"] == 20
