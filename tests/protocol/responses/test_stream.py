"""Reading Responses streams as upstreams send them (LM Studio, llama.cpp, others): item
ids, output indices, arguments and texts only in ``.done`` events, reasoning summaries,
errors and unknown events, down to what Claude Code sees."""

from tests.support.anthropic_checks import block_starts, block_texts, check_stream, tool_inputs
from tests.support.pipelines import responses_to_anthropic
from tests.support.upstream_streams import Call, Text, llamacpp_events, lmstudio_events


def convert(events, *, estimate=1000, stop_sequences=(), finish=True):
    return responses_to_anthropic(events, message_id="msg_test", model="claude-sonnet-4-6",
                                  input_tokens=estimate, stop_sequences=stop_sequences,
                                  finish=finish)


def test_tool_id_is_call_id_not_item_id():
    events = lmstudio_events(Call("Read", {"file_path": "/x"}))
    item_id = next(e for e in events if e["type"] == "response.output_item.added")["item"]
    conv, out = convert(events)
    [block] = block_starts(out)
    assert block["id"] == item_id["call_id"] != item_id["id"]
    assert block["id"].startswith("call_")



def test_arguments_only_in_done_event():
    conv, out = convert(lmstudio_events(Call("Bash", {"command": "pwd"}, args_mode="done_only")))
    check_stream(out, complete=True)
    assert tool_inputs(out) == {0: {"command": "pwd"}}



def test_arguments_only_in_output_item_done():
    events = [e for e in lmstudio_events(Call("Bash", {"command": "pwd"}, args_mode="done_only"))
              if e["type"] != "response.function_call_arguments.done"]
    conv, out = convert(events)
    check_stream(out, complete=True)
    assert tool_inputs(out) == {0: {"command": "pwd"}}



def test_interleaved_calls_without_indices_are_serialized():
    calls = [Call("Bash", {"command": f"echo {n} " + "x" * 40}) for n in range(3)]
    conv, out = convert(llamacpp_events(*calls))
    check_stream(out, complete=True)
    assert tool_inputs(out) == {n: {"command": f"echo {n} " + "x" * 40} for n in range(3)}



def test_error_event_mid_stream():
    events = lmstudio_events(Text("partial answer"))[:6]
    events.append({"type": "error", "code": "server_error", "message": "engine crashed",
                   "param": None, "sequence_number": 6})
    conv, out = convert(events)
    assert check_stream(out) == "error"
    assert out[-1]["error"]["type"] == "api_error"
    assert "engine crashed" in out[-1]["error"]["message"]



def test_context_overflow_in_stream_becomes_prompt_too_long():
    msg = ("Trying to keep the first 40000 tokens when context the overflows. However, the "
           "model is loaded with context length of only 32768 tokens, which is not enough.")
    conv, out = convert([{"type": "response.created", "response": {"id": "r"}},
                         {"type": "error", "code": "context_length_exceeded", "message": msg}])
    assert out[-1]["error"] == {"type": "invalid_request_error",
                                "message": "prompt is too long: 40000 tokens > 32768 maximum"}



def test_response_failed():
    conv, out = convert([{"type": "response.created", "response": {"id": "r"}},
                         {"type": "response.failed", "response": {
                             "id": "r", "status": "failed",
                             "error": {"code": "server_error", "message": "model crashed"}}}])
    assert check_stream(out) == "error"
    assert "model crashed" in out[-1]["error"]["message"]



def test_reasoning_delta_and_summary_variants():
    events = [
        {"type": "response.created", "response": {"id": "r"}},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"id": "rs_1", "type": "reasoning"}},
        {"type": "response.reasoning_text.delta", "item_id": "rs_1", "output_index": 0,
         "content_index": 0, "delta": "think "},
        {"type": "response.reasoning_text.delta", "item_id": "rs_1", "output_index": 0,
         "content_index": 0, "delta": "hard"},
        {"type": "response.reasoning_text.done", "item_id": "rs_1", "output_index": 0,
         "content_index": 0, "text": "think hard"},
        {"type": "response.output_item.added", "output_index": 1,
         "item": {"id": "rs_2", "type": "reasoning"}},
        {"type": "response.reasoning_summary_text.delta", "item_id": "rs_2", "output_index": 1,
         "summary_index": 0, "delta": "summary"},
        {"type": "response.output_item.done", "output_index": 1,
         "item": {"id": "rs_2", "type": "reasoning", "summary": [{"text": "summary"}]}},
        {"type": "response.completed", "response": {"id": "r"}},
    ]
    conv, out = convert(events)
    check_stream(out, complete=True)
    thinking = [e["delta"]["thinking"] for e in out if e["type"] == "content_block_delta"
                and e["delta"]["type"] == "thinking_delta"]
    assert thinking == ["think ", "hard", "summary"]
    assert [b["type"] for b in block_starts(out)] == ["thinking", "thinking"]



def test_text_only_in_output_item_done():
    events = [
        {"type": "response.created", "response": {"id": "r"}},
        {"type": "response.output_item.done", "output_index": 0, "item": {
            "id": "msg_1", "type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": "whole"}]}},
        {"type": "response.completed", "response": {"id": "r"}},
    ]
    conv, out = convert(events)
    check_stream(out, complete=True)
    assert block_texts(out) == {0: "whole"}



def test_unknown_event_types_are_counted_not_fatal():
    events = lmstudio_events(Text("ok"))
    events.insert(2, {"type": "response.lmstudio.prompt_progress", "progress": 0.5})
    conv, out = convert(events)
    check_stream(out, complete=True)
    assert conv.decoder.ignored["response.lmstudio.prompt_progress"] == 1



def test_a_tool_call_without_a_name_is_an_error_not_a_nameless_block():
    _conv, out = convert([
        {"type": "response.created", "response": {"id": "r"}},
        {"type": "response.output_item.added", "item": {"id": "fc_1", "type": "function_call",
                                                        "call_id": "c1", "arguments": ""}},
        {"type": "response.completed", "response": {"id": "r"}}])
    assert check_stream(out) == "error"
    assert "without a tool name" in out[-1]["error"]["message"]
