"""The Chat Completions dialect: request translation and the stream adapter."""

from __future__ import annotations

import itertools
import json

from lmsd.protocol.anthropic.request import validate_messages_request
from lmsd.protocol.chat.decode import ChatStreamAdapter
from lmsd.protocol.stream import StreamConverter
from tests.support.anthropic_checks import check_stream, tool_inputs
from tests.support.fixtures import body, requests
from tests.support.pivot import chat_body


def chat(raw, model="m"):
    return chat_body(validate_messages_request(raw), model=model)


def test_tool_loop_turn_two():
    raw = body("basic_json", 1)
    out = chat(raw)
    system, user, assistant, tool = out["messages"]
    assert system == {"role": "system", "content": raw["system"][1]["text"] + "\n\n"
                      + raw["system"][2]["text"]}
    blocks = raw["messages"][0]["content"]
    assert user["role"] == "user"
    assert user["content"] == (blocks[0]["text"] + "\n\n" + blocks[1]["text"] + "\n\n"
                               + "<system-reminder>\n" + raw["messages"][1]["content"]
                               + "\n</system-reminder>")
    text, use = raw["messages"][2]["content"]
    assert assistant == {"role": "assistant", "content": text["text"], "tool_calls": [
        {"id": use["id"], "type": "function", "function": {
            "name": "Bash", "arguments": json.dumps(use["input"], separators=(",", ":"))}}]}
    result = raw["messages"][3]["content"][0]
    assert tool == {"role": "tool", "tool_call_id": use["id"], "content": result["content"]}
    assert [t["function"]["name"] for t in out["tools"]] == [t["name"] for t in raw["tools"]]
    assert out["tools"][0]["type"] == "function"
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
    assert out["max_tokens"] == raw["max_tokens"]


def test_prefix_stable_turn_after_turn():
    bodies = [r["body"] for r in requests("interactive") if r["kind"] != "compact"]
    compared = 0
    for before, after in itertools.pairwise(bodies):
        if len(after["messages"]) <= len(before["messages"]):
            continue
        a, b = chat(before), chat(after)
        assert b["messages"][:len(a["messages"])] == a["messages"]
        assert b["tools"] == a["tools"]
        compared += 1
    assert compared >= 4


def test_tool_choice_images_and_tool_result_images():
    png = "iVBORw0KGgo="
    raw = {"model": "x", "max_tokens": 5, "tools": [
        {"name": "Shot", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "Shot", "disable_parallel_tool_use": True},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"}, {
                "type": "image", "source": {"type": "base64", "media_type": "image/png",
                                            "data": png}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Shot",
                                               "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                          "content": [{"type": "image", "source": {
                                              "type": "base64", "media_type": "image/png",
                                              "data": png}}]}]}]}
    out = chat(raw)
    assert out["messages"][1] == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "Shot", "arguments": "{}"}}]}
    assert out["tool_choice"] == {"type": "function", "function": {"name": "Shot"}}
    assert out["parallel_tool_calls"] is False
    assert out["messages"][0]["content"][1] == {
        "type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}
    tool, images = out["messages"][2:]
    assert tool["role"] == "tool" and "attached in the next message" in tool["content"]
    assert images == {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}]}


def run(chunks, *, done=True, stop=()):
    adapter = ChatStreamAdapter("msg_chat")
    conv = StreamConverter(message_id="msg_chat", model="m", input_tokens=100,
                           stop_sequences=stop)
    out = conv.start()
    for chunk in chunks:
        for event in adapter.feed(json.dumps(chunk)):
            out += conv.feed(event)
    if done:
        for event in adapter.feed("[DONE]"):
            out += conv.feed(event)
    for event in adapter.finish():
        out += conv.feed(event)
    return adapter, out + conv.finish()


def delta(**d):
    return {"id": "c1", "choices": [{"index": 0, "delta": d, "finish_reason": None}]}


def finish(reason):
    return {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}


def test_text_reasoning_and_usage():
    _, out = run([delta(role="assistant"), delta(reasoning_content="hmm "),
                  delta(reasoning_content="ok"), delta(content="Hel"), delta(content="lo"),
                  finish("stop"), {"id": "c1", "choices": [], "usage": {
                      "prompt_tokens": 90, "completion_tokens": 3,
                      "prompt_tokens_details": {"cached_tokens": 80}}}])
    check_stream(out, complete=True)
    kinds = [e["content_block"]["type"] for e in out if e["type"] == "content_block_start"]
    assert kinds == ["thinking", "text"]
    delta_event = next(e for e in out if e["type"] == "message_delta")
    assert delta_event["delta"]["stop_reason"] == "end_turn"
    assert (delta_event["usage"]["input_tokens"], delta_event["usage"][
        "cache_read_input_tokens"], delta_event["usage"]["output_tokens"]) == (10, 80, 3)


def test_llama_cpp_python_tool_call_chunks():
    """Every chunk repeats id, type and name, with explicit nulls and a legacy field."""
    call = {"index": 0, "id": "call__0_Bash_cmpl-1", "type": "function",
            "function": {"name": "Bash", "arguments": ""}}
    chunks = [delta(role="assistant", content=None, function_call=None, tool_calls=None)]
    for piece in ['{"comm', 'and": "l', 's"}']:
        chunks.append(delta(content=None, function_call={"name": "Bash", "arguments": piece},
                            tool_calls=[dict(call, function={"name": "Bash",
                                                             "arguments": piece})]))
    chunks.append(finish("tool_calls"))
    _, out = run(chunks, done=True)
    check_stream(out, complete=True)
    [start] = [e for e in out if e["type"] == "content_block_start"]
    assert start["content_block"]["id"] == "call__0_Bash_cmpl-1"
    assert tool_inputs(out) == {0: {"command": "ls"}}
    assert next(e for e in out if e["type"] == "message_delta")["delta"][
        "stop_reason"] == "tool_use"


def test_several_calls_in_one_chunk_and_a_name_that_comes_late():
    _, out = run([
        delta(tool_calls=[{"index": 0, "id": "a", "function": {"arguments": '{"x":'}},
                          {"index": 1, "id": "b", "function": {"name": "Read",
                                                               "arguments": '{"p":1}'}}]),
        delta(tool_calls=[{"index": 0, "function": {"name": "Bash", "arguments": "1}"}}]),
        finish("tool_calls")])
    check_stream(out, complete=True)
    names = [e["content_block"]["name"] for e in out if e["type"] == "content_block_start"]
    assert names == ["Bash", "Read"]
    assert tool_inputs(out) == {0: {"x": 1}, 1: {"p": 1}}


def test_cumulative_argument_snapshots():
    _, out = run([
        delta(tool_calls=[{"index": 0, "id": "a", "function": {"name": "Bash",
                                                              "arguments": '{"c"'}}]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": '{"c": "pwd"}'}}]),
        finish("tool_calls")])
    assert tool_inputs(out) == {0: {"c": "pwd"}}


def test_length_is_max_tokens_and_no_done_after_finish_is_complete():
    _, out = run([delta(content="cut"), finish("length")], done=False)
    check_stream(out, complete=True)
    assert next(e for e in out if e["type"] == "message_delta")["delta"][
        "stop_reason"] == "max_tokens"


def test_a_stream_cut_before_finish_is_an_error():
    _, out = run([delta(content="half")], done=False)
    assert check_stream(out) == "error"


def test_an_empty_stream_is_flagged():
    adapter, _ = run([], done=False)
    assert adapter.empty


def test_error_chunk():
    _, out = run([delta(content="x"), {"error": {"message": "boom", "type": "server_error"}}])
    assert check_stream(out) == "error" and "boom" in out[-1]["error"]["message"]


def test_a_call_whose_name_never_comes_is_an_error():
    _, out = run([delta(tool_calls=[{"index": 0, "id": "a", "function": {
        "arguments": "{}"}}]), finish("tool_calls")])
    assert check_stream(out) == "error"
    assert "without a tool name" in out[-1]["error"]["message"]
