"""What Claude Code sees for an upstream Responses stream: the guarantees of the Anthropic
encoder (ordering, stop sequences, signatures, usage, the end), fed through the Responses
decoder as at run time. What is peculiar to reading Responses is in tests/protocol/responses."""

import json

import pytest

from lmsd.protocol.anthropic.encode import AnthropicEncoder, thinking_signature
from tests.support.anthropic_checks import (
    block_starts,
    block_texts,
    check_stream,
    final_delta,
    tool_inputs,
)
from tests.support.pipelines import responses_to_anthropic
from tests.support.upstream_streams import Call, Reasoning, Text, lmstudio_events


def convert(events, *, estimate=1000, stop_sequences=(), finish=True):
    return responses_to_anthropic(events, message_id="msg_test", model="claude-sonnet-4-6",
                                  input_tokens=estimate, stop_sequences=stop_sequences,
                                  finish=finish)


def test_message_start_comes_first_with_the_estimate_and_full_usage():
    conv = AnthropicEncoder(message_id="msg_1", model="claude-x", input_tokens=4321)
    [start] = conv.start()
    assert start["message"]["id"] == "msg_1"
    assert start["message"]["model"] == "claude-x"
    assert start["message"]["usage"]["input_tokens"] == 4321
    assert conv.start() == []  # exactly once



def test_plain_text():
    conv, out = convert(lmstudio_events(Text("Hello, world! How are you?")))
    assert check_stream(out, complete=True) == "complete"
    assert block_texts(out) == {0: "Hello, world! How are you?"}
    assert final_delta(out)["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}



def test_reasoning_text_and_tool_call_lmstudio_style():
    events = lmstudio_events(
        Reasoning("I should list files."), Text("Let me look."),
        Call("Bash", {"command": "ls -la"}, call_id="call_123456789"),
    )
    conv, out = convert(events)
    check_stream(out, complete=True)
    blocks = block_starts(out)
    assert [b["type"] for b in blocks] == ["thinking", "text", "tool_use"]
    thinking = "".join(e["delta"]["thinking"] for e in out
                       if e["type"] == "content_block_delta"
                       and e["delta"]["type"] == "thinking_delta")
    assert thinking == "I should list files."
    sig = [e["delta"]["signature"] for e in out if e["type"] == "content_block_delta"
           and e["delta"]["type"] == "signature_delta"]
    assert sig == [thinking_signature("I should list files.")]
    assert blocks[2]["id"] == "call_123456789"  # the call_id, never the fc_ item id
    assert tool_inputs(out) == {2: {"command": "ls -la"}}
    assert final_delta(out)["delta"]["stop_reason"] == "tool_use"



def test_parallel_tool_calls_get_contiguous_indices():
    conv, out = convert(lmstudio_events(
        Text("Two at once."),
        Call("Bash", {"command": "echo a"}), Call("Bash", {"command": "echo b"}),
    ))
    check_stream(out, complete=True)
    assert tool_inputs(out) == {1: {"command": "echo a"}, 2: {"command": "echo b"}}
    ids = [b["id"] for b in block_starts(out) if b["type"] == "tool_use"]
    assert len(set(ids)) == 2



def test_incomplete_is_max_tokens():
    conv, out = convert(lmstudio_events(Text("cut off mid"), incomplete=True))
    check_stream(out, complete=True)
    assert final_delta(out)["delta"]["stop_reason"] == "max_tokens"



@pytest.mark.parametrize("chunk", [1, 2, 5, 100])
def test_stop_sequence_split_across_deltas(chunk):
    conv, out = convert(lmstudio_events(Text("alpha beta STOP gamma"), chunk_size=chunk),
                        stop_sequences=["STOP", "never"])
    check_stream(out, complete=True)
    assert block_texts(out) == {0: "alpha beta "}
    assert final_delta(out)["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "STOP"}
    assert conv.encoder.done



def test_partial_stop_sequence_at_the_end_is_released():
    conv, out = convert(lmstudio_events(Text("ends with ST"), chunk_size=2),
                        stop_sequences=["STOP"])
    assert block_texts(out) == {0: "ends with ST"}
    assert final_delta(out)["delta"]["stop_reason"] == "end_turn"



def test_usage_replaces_lmstudio_zero_count_with_the_estimate():
    usage = {"input_tokens": 0, "output_tokens": 7, "total_tokens": 7,
             "input_tokens_details": {"cached_tokens": 0},
             "output_tokens_details": {"reasoning_tokens": 0}}
    conv, out = convert(lmstudio_events(Text("hi"), usage=usage), estimate=20_000)
    u = final_delta(out)["usage"]
    assert u["input_tokens"] + u["cache_read_input_tokens"] == 20_000
    assert u["output_tokens"] == 7



def test_usage_trusts_a_plausible_upstream_count_and_splits_cache_reads():
    usage = {"input_tokens": 18_000, "output_tokens": 5,
             "input_tokens_details": {"cached_tokens": 17_000}}
    conv, out = convert(lmstudio_events(Text("hi"), usage=usage), estimate=20_000)
    u = final_delta(out)["usage"]
    assert (u["input_tokens"], u["cache_read_input_tokens"]) == (1_000, 17_000)



def test_stream_cut_without_terminal_event_ends_with_an_error():
    conv, out = convert(lmstudio_events(Text("never finished"))[:7])
    assert check_stream(out) == "error"
    assert out[-1]["error"]["type"] == "api_error"



def test_nothing_after_the_end():
    conv, out = convert(lmstudio_events(Text("done")))
    assert conv.feed({"type": "response.output_text.delta", "item_id": "x", "delta": "y"}) == []
    assert conv.finish() == []



def test_non_object_arguments_are_wrapped_so_the_client_can_parse_them():
    conv, out = convert(lmstudio_events(Call("Bash", "ls -la", args_mode="done_only")))
    check_stream(out, complete=True)
    assert tool_inputs(out) == {0: {"__lmsd_invalid_arguments": "ls -la"}}



def test_empty_arguments_leave_input_empty():
    conv, out = convert(lmstudio_events(Call("ListAgents", "")))
    assert tool_inputs(out) == {0: {}}



def test_empty_reasoning_and_empty_text_make_no_blocks():
    conv, out = convert(lmstudio_events(Reasoning(""), Text(""), Text("real")))
    check_stream(out, complete=True)
    assert block_texts(out) == {0: "real"}



def test_response_id_and_output_tokens_are_kept():
    usage = {"input_tokens": 900, "output_tokens": 12}
    events = lmstudio_events(Text("abc"), usage=usage)
    conv, out = convert(events)
    assert conv.encoder.response_id == events[0]["response"]["id"]
    assert conv.encoder.usage["output_tokens"] == 12
    json.dumps(out)  # every event is JSON-serializable



def test_one_item_id_reused_for_reasoning_and_text_makes_two_blocks():
    """Found by the fuzzer: blocks are keyed by kind as well as by upstream item."""
    _conv, out = convert([
        {"type": "response.reasoning_text.delta", "item_id": "a", "delta": "hmm"},
        {"type": "response.output_text.delta", "item_id": "a", "delta": "answer"},
        {"type": "response.completed", "response": {"id": "r"}}])
    check_stream(out, complete=True)
    assert [e["content_block"]["type"] for e in out
            if e["type"] == "content_block_start"] == ["thinking", "text"]
