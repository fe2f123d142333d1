"""The LM Studio emulator's /v1/responses stream: event order, SSE framing and
the non-streamed shape, driven by the official openai SDK."""

from __future__ import annotations

import json

import httpx

from tests.emulator import (
    Call,
    Reasoning,
    Reply,
    Text,
    tokenize,
)
from tests.support.emulator_sdk import (
    BASH_TOOL,
    MODEL,
    Start,
    collect,
)

# -- streaming shape -------------------------------------------------------------------------


async def test_stream_helper_final_response(start: Start) -> None:
    emu, client, _ = await start()
    emu.script(
        Reply(Reasoning("let me think"), Text("hello world"), Call("Bash", {"command": "ls"}))
    )
    async with client.responses.stream(model=MODEL, input="hi", tools=[BASH_TOOL]) as stream:
        types = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert final.status == "completed"
    assert final.id.startswith("resp_") and len(final.id) == len("resp_") + 48
    reasoning, message, call = final.output
    assert reasoning.type == "reasoning"
    assert reasoning.content is not None and reasoning.content[0].text == "let me think"
    assert message.type == "message" and final.output_text == "hello world"
    assert call.type == "function_call" and call.name == "Bash"
    assert json.loads(call.arguments) == {"command": "ls"}
    assert call.id is not None and call.id.startswith("fc_")
    assert call.call_id.startswith("call_") and call.call_id[5:].isdigit()
    assert call.call_id != call.id
    assert emu.log[-1].outcome == "completed" and final.id in emu.responses


async def test_stream_event_order_and_sequence(start: Start) -> None:
    emu, client, _ = await start(chunk_size=3)
    emu.script(Reply(Reasoning("a long thought"), Text("streamed text"), Call("Read", {"p": 1})))
    events = await collect(await client.responses.create(model=MODEL, input="hi", stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    types = [e.type for e in events]
    assert "response.reasoning_text.delta" not in types
    (thought,) = [e for e in events if e.type == "response.reasoning_text.done"]
    assert thought.text == "a long thought" and thought.content_index == 0
    assert types[2:5] == [
        "response.output_item.added",
        "response.reasoning_text.done",
        "response.output_item.done",
    ]
    assert events[2].item.id.startswith("rs_") and events[2].item.content == []
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == "streamed text"
    msg_types = types[5 : types.index("response.output_item.done", 5) + 1]
    assert msg_types[:2] == ["response.output_item.added", "response.content_part.added"]
    assert msg_types[-3:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    added = events[5].item
    assert added.id.startswith("msg_") and added.status == "in_progress"
    args = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(args) > 1 and json.loads("".join(args)) == {"p": 1}
    (args_done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert json.loads(args_done.arguments) == {"p": 1}
    call_added = next(
        e for e in events if e.type == "response.output_item.added" and e.output_index == 2
    )
    assert call_added.item.arguments == "" and call_added.item.call_id != call_added.item.id
    assert events[-1].type == "response.completed"
    assert events[0].response.status == "in_progress"


async def test_raw_sse_framing(start: Start) -> None:
    _, _, url = await start()
    body = {"model": MODEL, "input": "hi", "stream": True}
    async with (
        httpx.AsyncClient() as http,
        http.stream("POST", f"{url}/v1/responses", json=body) as r,
    ):
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = (await r.aread()).decode()
    blocks = [b for b in raw.split("\n\n") if b]
    assert "[DONE]" not in raw
    for block in blocks:
        event_line, data_line = block.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        assert json.loads(data_line[6:])["type"] == event_line[7:]


async def test_args_done_only(start: Start) -> None:
    emu, client, _ = await start()
    emu.script(Reply(Call("Bash", {"command": "pwd"}, args_mode="done_only")))
    events = await collect(await client.responses.create(model=MODEL, input="x", stream=True))
    types = [e.type for e in events]
    assert "response.function_call_arguments.delta" not in types
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert json.loads(done.arguments) == {"command": "pwd"}
    assert json.loads(events[-1].response.output[0].arguments) == {"command": "pwd"}


async def test_non_streaming_and_usage_shape(start: Start) -> None:
    emu, client, url = await start()
    emu.script(Reply(Reasoning("think think"), Text("plain answer")))
    response = await client.responses.create(model=MODEL, input="question")
    assert response.status == "completed" and response.output_text == "plain answer"
    emu.script(Reply(Text("again")))
    async with httpx.AsyncClient() as http:
        raw = (await http.post(f"{url}/v1/responses", json={"model": MODEL, "input": "q"})).json()
    usage = raw["usage"]
    assert set(usage) == {
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "input_tokens_details",
        "output_tokens_details",
    }
    assert set(usage["input_tokens_details"]) == {"cached_tokens"}
    assert set(usage["output_tokens_details"]) == {"reasoning_tokens"}
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens == len(tokenize("think think"))
    assert raw["object"] == "response" and raw["model"] == MODEL
