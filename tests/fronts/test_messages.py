"""End to end: the official anthropic SDK -> lmsd -> the LM Studio emulator: turns
(text, tools, thinking, images, stops), pings and cancellation."""

from __future__ import annotations

import json

import httpx
import trio

from tests.emulator import Call, Fault, Reasoning, Reply, Text
from tests.support.anthropic_checks import check_stream
from tests.support.fixtures import body
from tests.support.messages_sdk import (
    BASH,
    MODEL,
    PNG,
    raw_stream,
    stream_final,
    user,
)


async def test_streamed_text_through_the_sdk(client, emulator):
    emulator.script(Reply(Text("Hello from the local model.")))
    msg = await stream_final(client, messages=user("hi"))
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "Hello from the local model."
    assert msg.stop_reason == "end_turn"
    assert msg.model == "claude-sonnet-4-6"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    [record] = emulator.generations
    assert record.body["model"] == MODEL  # claude-* mapped to the loaded model
    assert record.body["stream"] is True


async def test_non_streaming_gives_the_same_content(client, emulator):
    emulator.script(Reply(Reasoning("plan"), Text("answer"), Call("Bash", {"command": "ls"})))
    msg = await client.messages.create(model="claude-sonnet-4-6", max_tokens=100,
                                       messages=user("go"), tools=[BASH])
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
    assert msg.content[0].thinking == "plan" and msg.content[0].signature
    assert msg.content[2].input == {"command": "ls"}
    assert msg.stop_reason == "tool_use"


async def test_tool_loop_pairs_call_ids(client, emulator):
    emulator.script(Reply(Text("Running it."), Call("Bash", {"command": "echo hi"})),
                    Reply(Text("It printed hi.")))
    first = await stream_final(client, messages=user("say hi"), tools=[BASH])
    tool_use = first.content[1]
    assert tool_use.type == "tool_use" and first.stop_reason == "tool_use"
    upstream_call_id = emulator.generations[0].response_id and tool_use.id
    assert tool_use.id.startswith("call_")
    history = [*user("say hi"), {"role": "assistant", "content": first.content},
               {"role": "user", "content": [
                   {"type": "tool_result", "tool_use_id": tool_use.id, "content": "hi\n"}]}]
    second = await stream_final(client, messages=history, tools=[BASH])
    assert second.content[0].text == "It printed hi."
    turn2 = emulator.generations[1]
    # chained: LM Studio already holds turn 1, so only the tool result goes up
    assert turn2.body["previous_response_id"] == emulator.generations[0].response_id
    assert turn2.body["input"] == [{"type": "function_call_output",
                                    "call_id": upstream_call_id, "output": "hi\n"}]
    # and LM Studio's reconstructed context pairs it with the model's own call
    call = next(i for i in turn2.context_items if i["type"] == "function_call")
    assert call["call_id"] == upstream_call_id
    assert [t["name"] for t in emulator.generations[1].body["tools"]] == ["Bash"]


async def test_parallel_tool_calls(client, emulator):
    emulator.script(Reply(Call("Bash", {"command": "a"}), Call("Bash", {"command": "b"})))
    msg = await stream_final(client, messages=user("two"), tools=[BASH])
    assert [b.input for b in msg.content] == [{"command": "a"}, {"command": "b"}]
    assert len({b.id for b in msg.content}) == 2


async def test_arguments_only_in_done_event_reach_the_client(client, emulator):
    emulator.script(Reply(Call("Bash", {"command": "pwd"}, args_mode="done_only")))
    msg = await stream_final(client, messages=user("where"), tools=[BASH])
    assert msg.content[0].input == {"command": "pwd"}


async def test_thinking_block_and_its_history(client, emulator):
    emulator.script(Reply(Reasoning("Let me think."), Text("Done thinking.")),
                    Reply(Text("ok")))
    msg = await stream_final(client, messages=user("think"))
    thinking = msg.content[0]
    assert thinking.type == "thinking" and thinking.thinking == "Let me think."
    assert thinking.signature
    history = [*user("think"), {"role": "assistant", "content": msg.content},
               *user("again")]
    await stream_final(client, messages=history)
    assert "Let me think." not in json.dumps(emulator.generations[1].body)


async def test_raw_event_sequence_is_valid(http, emulator):
    emulator.script(Reply(Reasoning("r"), Text("t"), Call("Bash", {"command": "x"})))
    events = await raw_stream(http, {"model": "claude-opus-4-6", "max_tokens": 50,
                                     "messages": user("x"), "tools": [BASH]})
    assert check_stream(events, complete=True) == "complete"
    assert [e["content_block"]["type"] for e in events
            if e["type"] == "content_block_start"] == ["thinking", "text", "tool_use"]


async def test_beta_query_string(http, emulator):
    response = await http.post("/v1/messages?beta=true", json={
        "model": "claude-opus-4-6", "max_tokens": 50, "messages": user("x")})
    assert response.status_code == 200
    assert response.json()["content"][0]["text"] == "Hello from the LM Studio emulator."


async def test_images_are_sent_as_data_urls(client, emulator):
    emulator.models[MODEL].vision = True
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG}}
    await stream_final(client, messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"}, image]}])
    sent = emulator.generations[0].body["input"]
    assert sent[0]["content"] == [{"type": "input_text", "text": "what is this?"}]
    assert sent[1]["content"] == [{"type": "input_image", "detail": "auto",
                                   "image_url": f"data:image/png;base64,{PNG}"}]


async def test_stop_sequences(client, emulator):
    emulator.script(Reply(Text("one two three four")))
    msg = await stream_final(client, messages=user("count"), stop_sequences=["three"])
    assert msg.content[0].text == "one two "
    assert (msg.stop_reason, msg.stop_sequence) == ("stop_sequence", "three")


async def test_max_tokens_stop_reason(client, emulator):
    emulator.script(Reply(Text("cut"), incomplete=True))
    msg = await stream_final(client, messages=user("long"))
    assert msg.stop_reason == "max_tokens"


async def test_captured_claude_code_request(client, emulator, http):
    raw = body("basic_json", 1)
    emulator.script(Reply(Text("done")))
    events = await raw_stream(http, raw)
    check_stream(events, complete=True)
    sent = emulator.generations[0].body
    assert "x-anthropic-billing-header" not in sent["instructions"]
    assert len(sent["tools"]) == 12


# -- pings and cancellation ------------------------------------------------------------------

async def test_pings_while_the_upstream_is_silent(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, ping_interval="0.05")
    emulator.inject(Fault.slow_first_byte(0.6))
    async with httpx.AsyncClient(base_url=server.url) as http:
        events = await raw_stream(http, {"model": "claude-x", "max_tokens": 10,
                                         "messages": user("slow")})
    check_stream(events, complete=True)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start"
    first_block = kinds.index("content_block_start")
    assert kinds[1:first_block].count("ping") >= 2


async def test_client_disconnect_cancels_the_upstream(lmsd, emulator):
    emulator.inject(Fault.hang())
    payload = {"model": "claude-x", "max_tokens": 10, "stream": True, "messages": user("hang")}
    async with (
        httpx.AsyncClient(base_url=lmsd.url) as http,
        http.stream("POST", "/v1/messages", json=payload) as response,
    ):
        async for chunk in response.aiter_raw():
            assert b"message_start" in chunk
            break
        with trio.fail_after(10):
            while not emulator.generations:  # until LM Studio has the request
                await trio.sleep(0.01)
    # leaving the block closed the connection: the client has gone away
    [record] = emulator.generations
    with trio.fail_after(10):
        await record.done.wait()
    assert record.outcome == "cancelled"
