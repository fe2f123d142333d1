"""The LM Studio emulator's stored responses: chaining on previous_response_id and
the prefix cache it accounts for."""

from __future__ import annotations

import openai
import pytest

from tests.emulator import (
    Reply,
    Text,
    count_tokens,
    tokenize,
)
from tests.support.emulator_sdk import (
    BASH_TOOL,
    MODEL,
    Start,
    message_of,
    user,
)

# -- stateful chaining -------------------------------------------------------------------------


async def test_previous_response_chaining(start: Start) -> None:
    emu, client, _ = await start()
    emu.script(Reply(Text("first answer")), Reply(Text("second answer")))
    first = await client.responses.create(model=MODEL, input="first question")
    second = await client.responses.create(
        model=MODEL, input=[user("second question")], previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    record = emu.log[-1]
    assert record.previous_response_id == first.id
    assert record.new_items == [user("second question")]
    context = record.context_items
    assert context[0] == user("first question")
    assert context[1]["type"] == "message" and context[1]["role"] == "assistant"
    assert context[1]["content"][0]["text"] == "first answer"
    assert context[2] == user("second question")


async def test_tools_are_not_restored(start: Start) -> None:
    emu, client, _ = await start()
    first = await client.responses.create(model=MODEL, input="hi", tools=[BASH_TOOL])
    await client.responses.create(model=MODEL, input="more", previous_response_id=first.id)
    assert emu.log[0].tools == [BASH_TOOL] and emu.log[1].tools == []


@pytest.mark.parametrize(("mode", "expected"), [("inherit", "be terse"), ("replace", None)])
async def test_instructions_modes(start: Start, mode: str, expected: str | None) -> None:
    emu, client, _ = await start(instructions_mode=mode)
    first = await client.responses.create(model=MODEL, input="a", instructions="be terse")
    second = await client.responses.create(model=MODEL, input="b", previous_response_id=first.id)
    assert emu.log[-1].instructions_used == expected
    assert second.instructions == expected
    await client.responses.create(
        model=MODEL, input="c", previous_response_id=second.id, instructions="new rules"
    )
    assert emu.log[-1].instructions_used == "new rules"


async def test_previous_response_not_found(start: Start) -> None:
    emu, client, _ = await start()
    first = await client.responses.create(model=MODEL, input="a")
    emu.wipe_history()
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model=MODEL, input="b", previous_response_id=first.id)
    assert info.value.code == "previous_response_not_found"
    assert info.value.param == "previous_response_id"
    assert message_of(info.value) == f"Previous response with id '{first.id}' not found."
    assert emu.log[-1].outcome == "rejected" and emu.log[-1].status == 400


async def test_store_false_is_not_chainable(start: Start) -> None:
    emu, client, _ = await start()
    first = await client.responses.create(model=MODEL, input="a", store=False)
    assert first.id not in emu.responses
    with pytest.raises(openai.BadRequestError):
        await client.responses.create(model=MODEL, input="b", previous_response_id=first.id)


# -- prefix cache and usage --------------------------------------------------------------------


@pytest.mark.parametrize("usage_mode", ["lmstudio", "openai"])
async def test_prefix_cache_accounting(start: Start, usage_mode: str) -> None:
    emu, client, _ = await start(usage_mode=usage_mode)
    emu.script(Reply(Text("first reply")), Reply(Text("second reply")))
    first = await client.responses.create(model=MODEL, input="hello there", instructions="sys")
    second = await client.responses.create(
        model=MODEL, input="and again", previous_response_id=first.id
    )
    r1, r2 = emu.log
    assert r1.input_tokens == count_tokens(r1.context_items, instructions="sys")
    assert r1.cached_tokens == 0
    output = emu.responses[first.id].output
    prefix = count_tokens(r1.context_items, instructions="sys") + count_tokens(output)
    assert r2.input_tokens == emu.count_tokens(r2.context_items, instructions="sys")
    assert r2.cached_tokens == prefix < r2.input_tokens
    assert first.usage is not None and second.usage is not None
    if usage_mode == "openai":
        assert first.usage.input_tokens == r1.input_tokens
        assert second.usage.input_tokens == r2.input_tokens
        assert second.usage.input_tokens_details.cached_tokens == prefix
    else:
        assert second.usage.input_tokens == r2.input_tokens - prefix
        assert second.usage.input_tokens_details.cached_tokens == 0
    assert first.usage.output_tokens == count_tokens(output)


async def test_prefix_cache_diverges(start: Start) -> None:
    emu, client, _ = await start(usage_mode="openai")
    await client.responses.create(model=MODEL, input="alpha beta gamma", instructions="one")
    await client.responses.create(model=MODEL, input="alpha beta gamma", instructions="two")
    # the rendered prompt differs at the instructions text: only "<|system|>\n" is shared
    assert emu.log[-1].cached_tokens == len(tokenize("<|system|>"))
