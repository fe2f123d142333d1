"""A chat completion stream, down to what Claude Code sees: text, reasoning, usage, tool
calls as llama-cpp-python, vLLM and others send them, and how a stream ends."""

from __future__ import annotations

import json

from tests.support.anthropic_checks import check_stream, tool_inputs
from tests.support.pipelines import ChatPipeline


def run(chunks, *, done=True, stop=()):
    pipeline = ChatPipeline(message_id="msg_chat", model="m", input_tokens=100,
                            stop_sequences=stop)
    out = pipeline.start()
    for chunk in chunks:
        out += pipeline.feed(json.dumps(chunk))
    if done:
        out += pipeline.feed("[DONE]")
    return pipeline.decoder, out + pipeline.finish()


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
