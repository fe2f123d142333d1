"""Tool calls printed as text (issue 13), end to end: the anthropic and openai SDKs ->
lmsd -> the LM Studio emulator, which prints the call as text in its answer."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.emulator import PrintedCall, Reply, Text, printed_call

MODEL = "qwen/qwen3-coder-30b"  # the emulator's loaded model
SCHEMA = {"type": "object", "properties": {"command": {"type": "string"}},
          "required": ["command"]}
BASH = {"name": "Bash", "description": "Run a command", "input_schema": SCHEMA}
CHAT_BASH = {"type": "function", "function": {
    "name": "Bash", "description": "Run a command", "parameters": SCHEMA}}
ARGS = {"command": "ls -la"}
FORMATS = ["qwen_xml", "hermes_json"]


def user(text):
    return [{"role": "user", "content": text}]


async def ask(client, stream, **kwargs):
    kwargs = {"model": "claude-sonnet-4-6", "max_tokens": 1000, "tools": [BASH], **kwargs}
    if stream:
        async with client.messages.stream(**kwargs) as s:
            return await s.get_final_message()
    return await client.messages.create(**kwargs)


def repaired_events(lmsd):
    return [e for e in lmsd.bus.recent if e["type"] == "tool_call.repaired"]


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
@pytest.mark.parametrize("fmt", FORMATS)
async def test_anthropic_gets_a_real_tool_use(client, lmsd, emulator, fmt, stream):
    emulator.script(Reply(PrintedCall(fmt, "Bash", ARGS, before="Let me look.\n")))
    message = await ask(client, stream, messages=user("list the files"))
    assert message.stop_reason == "tool_use"
    text, call = message.content
    assert text.type == "text" and text.text.strip() == "Let me look."
    assert call.type == "tool_use" and call.name == "Bash" and call.input == ARGS
    assert call.id.startswith("toolu_") or "lmsd" in call.id
    [event] = repaired_events(lmsd)
    assert event["tool"] == "Bash" and event["front"] == "anthropic" and event["format"]
    assert event["request_id"].startswith("req_") and event["session"]


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
@pytest.mark.parametrize("fmt", FORMATS)
async def test_openai_chat_gets_real_tool_calls(lmsd, emulator, fmt, stream):
    emulator.script(Reply(PrintedCall(fmt, "Bash", ARGS)))
    async with openai.AsyncOpenAI(base_url=f"{lmsd.url}/v1", api_key="x", max_retries=0,
                                  timeout=30) as oai:
        kwargs = {"model": MODEL, "messages": user("list the files"), "tools": [CHAT_BASH]}
        if stream:
            calls: dict[int, dict[str, str]] = {}
            finish = None
            async for chunk in await oai.chat.completions.create(stream=True, **kwargs):
                for choice in chunk.choices:
                    for c in choice.delta.tool_calls or ():
                        slot = calls.setdefault(c.index, {"name": "", "args": ""})
                        slot["name"] += (c.function and c.function.name) or ""
                        slot["args"] += (c.function and c.function.arguments) or ""
                    finish = choice.finish_reason or finish
            [call] = calls.values()
            name, args = call["name"], call["args"]
        else:
            completion = await oai.chat.completions.create(**kwargs)
            finish = completion.choices[0].finish_reason
            [tc] = completion.choices[0].message.tool_calls
            name, args = tc.function.name, tc.function.arguments
    assert finish == "tool_calls" and name == "Bash" and json.loads(args) == ARGS
    [event] = repaired_events(lmsd)
    assert event["front"] == "openai_chat"


NOT_CALLS = [
    "Here is how a model prints a call:\n```\n" + printed_call("hermes_json", "Bash", ARGS)
    + "\n```\nThat is all.",
    printed_call("hermes_json", "Undeclared", ARGS),
]


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
@pytest.mark.parametrize("text", NOT_CALLS, ids=["code_fence", "undeclared"])
async def test_what_is_not_a_call_stays_text_byte_for_byte(client, lmsd, emulator, text,
                                                           stream):
    emulator.script(Reply(Text(text)))
    message = await ask(client, stream, messages=user("explain"))
    assert message.stop_reason == "end_turn"
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == text
    assert repaired_events(lmsd) == []


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
async def test_setting_off_passes_the_text_through(start_lmsd, emulator, stream):
    import anthropic

    server = await start_lmsd(emulator.url, repair_tool_calls="false")
    text = "Sure.\n" + printed_call("qwen_xml", "Bash", ARGS)
    emulator.script(Reply(Text(text)))
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="k", max_retries=0) as c:
        message = await ask(c, stream, messages=user("list"))
    assert message.stop_reason == "end_turn" and message.content[0].text == text
    assert repaired_events(server) == []


async def test_the_turn_after_a_repair_chains_from_the_node_before_it(client, lmsd, emulator):
    """Not stored as a node, the repaired answer is sent as new items: the repaired call
    with lmsd's id and its output, after the last node LM Studio really produced."""
    emulator.script(Reply(Text("Hello.")), Reply(PrintedCall("hermes_json", "Bash", ARGS)),
                    Reply(Text("Two files.")))
    history = user("hi")
    first = await ask(client, True, messages=history)
    [(key, [node])] = [(k, lmsd.store.nodes(k)) for k in lmsd.store.stats]
    history += [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
                {"role": "user", "content": "list the files"}]
    second = await ask(client, True, messages=history)
    [call] = [b for b in second.content if b.type == "tool_use"]
    assert lmsd.store.nodes(key) == [node]  # the repaired answer is no node
    history += [{"role": "assistant", "content": [b.model_dump() for b in second.content]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                              "content": "a b"}]}]
    third = await ask(client, True, messages=history)
    assert third.content[0].text == "Two files."
    body = emulator.generations[-1].body
    assert body["previous_response_id"] == node.response_id
    kinds = [item.get("type") for item in body["input"]]
    assert kinds[-2:] == ["function_call", "function_call_output"]
    sent_call, sent_output = body["input"][-2:]
    assert sent_call["call_id"] == sent_output["call_id"] == call.id.removeprefix("toolu_") \
        or sent_call["call_id"] == sent_output["call_id"]
    assert sent_call["name"] == "Bash" and json.loads(sent_call["arguments"]) == ARGS
    assert len(lmsd.store.nodes(key)) == 2  # the answer to the tool result is one
    stats = lmsd.store.stats[key]
    assert stats.repaired_tool_calls == 1
    async with httpx.AsyncClient(base_url=lmsd.admin_url) as admin:
        sessions = (await admin.get("/sessions")).json()["sessions"]
        metrics = (await admin.get("/metrics")).text
    assert sessions[0]["agents"][0]["repaired_tool_calls"] == 1
    [line] = [m for m in metrics.splitlines()
              if m.startswith("lmsd_tool_calls_repaired_total{")]
    assert 'front="anthropic"' in line and line.endswith(" 1.0")


async def test_a_strict_upstream_refuses_an_unknown_call_output(emulator):
    """The emulator is as strict as LM Studio: lmsd's repaired call must be sent."""
    async with httpx.AsyncClient(base_url=emulator.url) as http:
        response = await http.post("/v1/responses", json={
            "model": MODEL, "input": [
                {"type": "message", "role": "user", "content": "hi"},
                {"type": "function_call_output", "call_id": "call_lmsd_1", "output": "x"}]})
    assert response.status_code == 400
    assert "No tool call found for function call output with call_id 'call_lmsd_1'" in \
        response.text


@pytest.mark.parametrize("fmt", FORMATS)
async def test_openai_responses_gets_a_function_call(lmsd, emulator, fmt):
    emulator.script(Reply(PrintedCall(fmt, "exec_command", {"cmd": "ls"}, before="Looking.\n")))
    tool = {"type": "function", "name": "exec_command", "description": "Run a command",
            "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}},
                           "required": ["cmd"]}}
    async with openai.AsyncOpenAI(base_url=f"{lmsd.url}/v1", api_key="x", max_retries=0,
                                  timeout=30) as oai:
        response = await oai.responses.create(model=MODEL, input="go",
                                              tools=[tool])  # type: ignore[list-item]
    assert [o.type for o in response.output] == ["message", "function_call"]
    assert response.output[0].content[0].text == "Looking.\n"
    call = response.output[1]
    assert call.name == "exec_command" and json.loads(call.arguments) == {"cmd": "ls"}
    assert call.call_id.startswith("call_lmsd_")
    [event] = repaired_events(lmsd)
    assert event["front"] == "openai_responses" and event["format"] == fmt


async def test_text_held_when_the_upstream_drops_reaches_the_client(http, emulator):
    """A possible call cut short by a dropped stream: what was held goes out as text
    before the error, as it would have without the filter."""
    from tests.emulator import Fault
    from tests.support.anthropic_checks import parse_sse

    text = 'Look <tool_call>{"name": "Bash", "arguments": {"command": "ls -la /tmp"}}'
    emulator.inject(Fault.drop(after_events=12))
    emulator.script(Reply(Text(text)))
    response = await http.post("/v1/messages", json={
        "model": "claude-x", "max_tokens": 100, "messages": user("x"), "tools": [BASH],
        "stream": True})
    events = parse_sse(response.content)
    got = "".join(e["delta"]["text"] for e in events
                  if e.get("type") == "content_block_delta"
                  and e["delta"].get("type") == "text_delta")
    assert "<tool_call>" in got and text.startswith(got)
    assert events[-1]["type"] == "error"
