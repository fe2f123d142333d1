"""The LM Studio emulator's incomplete answers and injected faults (HTTP errors, cut
streams, error events, slow and hung answers, client disconnects)."""

from __future__ import annotations

from contextlib import aclosing

import openai
import pytest
import trio

from tests.emulator import (
    Fault,
    Reply,
    Text,
)
from tests.support.emulator_sdk import (
    MODEL,
    Start,
    collect,
    message_of,
)

# -- incomplete and faults ---------------------------------------------------------------------


async def test_incomplete(start: Start) -> None:
    emu, client, _ = await start()
    emu.script(Reply(Text("cut off mid"), incomplete=True), Reply(Text("short"), incomplete=True))
    events = await collect(await client.responses.create(model=MODEL, input="x", stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.status == "incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    assert emu.log[-1].outcome == "incomplete"
    plain = await client.responses.create(model=MODEL, input="x")
    assert plain.status == "incomplete" and plain.output_text == "short"


async def test_fault_http_keeps_reply_queued(start: Start) -> None:
    emu, client, _ = await start()
    emu.script(Reply(Text("after retry")))
    emu.inject(Fault.http(503, "overloaded"))
    with pytest.raises(openai.InternalServerError) as info:
        await client.responses.create(model=MODEL, input="x")
    assert info.value.status_code == 503 and message_of(info.value) == "overloaded"
    assert emu.log[-1].outcome == "error" and emu.log[-1].fault == Fault.http(503, "overloaded")
    retry = await client.responses.create(model=MODEL, input="x")
    assert retry.output_text == "after retry"


async def test_fault_drop_stream(start: Start) -> None:
    emu, client, _ = await start()
    emu.inject(Fault.drop(after_events=5))
    seen: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async for event in await client.responses.create(model=MODEL, input="x", stream=True):
            seen.append(event.type)
    assert len(seen) == 5
    record = emu.log[-1]
    with trio.fail_after(5):
        await record.done.wait()
    assert record.outcome == "dropped" and record.response_id not in emu.responses


async def test_fault_drop_non_streaming(start: Start) -> None:
    emu, client, _ = await start()
    emu.inject(Fault.drop())
    with pytest.raises(openai.APIConnectionError):
        await client.responses.create(model=MODEL, input="x")
    assert emu.log[-1].outcome == "dropped"


async def test_fault_error_event(start: Start) -> None:
    emu, client, _ = await start()
    emu.inject(Fault.error_event(after_events=3, message="model crashed", code="server_error"))
    events = await collect(await client.responses.create(model=MODEL, input="x", stream=True))
    assert [e.type for e in events][3:] == ["error"]
    assert events[3].message == "model crashed" and events[3].code == "server_error"
    assert events[3].sequence_number == 3
    assert emu.log[-1].outcome == "error"


async def test_fault_failed(start: Start) -> None:
    emu, client, _ = await start()
    emu.script(Reply(Text("kept")))
    emu.inject(Fault.failed(message="oops", code="server_error"))
    events = await collect(await client.responses.create(model=MODEL, input="x", stream=True))
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    assert events[-1].response.status == "failed"
    assert events[-1].response.error.message == "oops"
    assert emu.log[-1].outcome == "failed" and emu.pending_replies == 1


async def test_fault_slow_first_byte(start: Start) -> None:
    emu, client, _ = await start()
    emu.inject(Fault.slow_first_byte(30), Fault.slow_first_byte(0.01))
    with trio.move_on_after(0.3) as scope:
        await client.responses.create(model=MODEL, input="x")
    assert scope.cancelled_caught
    with trio.fail_after(5):
        await emu.log[-1].done.wait()
    assert emu.log[-1].outcome == "cancelled" and emu.log[-1].status is None
    response = await client.responses.create(model=MODEL, input="x")
    assert response.status == "completed" and emu.log[-1].outcome == "completed"


async def test_fault_hang(start: Start) -> None:
    emu, client, _ = await start()
    emu.script(Reply(Text("kept")))
    emu.inject(Fault.hang())
    with trio.move_on_after(0.3) as scope:
        await client.responses.create(model=MODEL, input="x", stream=True)
    assert scope.cancelled_caught
    record = emu.log[-1]
    with trio.fail_after(5):
        await record.done.wait()
    assert record.outcome == "cancelled" and emu.pending_replies == 1


async def test_client_disconnect_is_recorded(start: Start) -> None:
    emu, client, _ = await start(token_delay=0.01)
    emu.script(Reply(Text("x" * 4000)))
    stream = await client.responses.create(model=MODEL, input="x", stream=True)
    async with aclosing(stream.__aiter__()) as events:
        async for event in events:
            if event.type == "response.output_text.delta":
                break
    await stream.close()
    record = emu.log[-1]
    with trio.fail_after(5):
        await record.done.wait()
    assert record.outcome == "cancelled"
    assert record.response_id is not None and record.response_id not in emu.responses
