"""The Anthropic encoder fed pivot events directly: each guarantee, event by event."""

from __future__ import annotations

import pytest

from lmsd.protocol.anthropic.encode import AnthropicEncoder, thinking_signature
from lmsd.protocol.failures import (
    ContextOverflow,
    Failure,
    Overloaded,
    StaleChain,
    UpstreamBroken,
    UpstreamFailure,
    UpstreamTimeout,
)
from lmsd.protocol.pivot import (
    Failed,
    Finished,
    ReasoningDelta,
    ReasoningDone,
    Started,
    TextDelta,
    TextDone,
    ToolArgumentsDelta,
    ToolCallDone,
    ToolCallStarted,
    Usage,
)
from tests.support.anthropic_checks import (
    block_starts,
    block_texts,
    check_stream,
    final_delta,
    tool_inputs,
)


def encoder(**settings) -> AnthropicEncoder:
    return AnthropicEncoder(message_id="msg_e", model="claude-x",
                            input_tokens=settings.pop("input_tokens", 1000), **settings)


def encode(events, *, finish=True, **settings):
    enc = encoder(**settings)
    out = enc.start()
    for e in events:
        out += enc.feed(e)
    if finish:
        out += enc.finish()
    return enc, out


def test_a_text_answer_event_by_event():
    enc = encoder()
    assert [e["type"] for e in enc.start()] == ["message_start"]
    assert enc.feed(Started("resp_1")) == []
    assert enc.feed(TextDelta("t", "Hel")) == [
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "Hel"}}]
    assert enc.feed(TextDelta("t", "lo")) == [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}}]
    assert enc.feed(TextDone("t", "Hello")) == [{"type": "content_block_stop", "index": 0}]
    end = enc.feed(Finished("end", Usage(input_tokens=900, output_tokens=2)))
    assert [e["type"] for e in end] == ["message_delta", "message_stop"]
    assert end[0]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert (end[0]["usage"]["input_tokens"], end[0]["usage"]["output_tokens"]) == (900, 2)
    assert (enc.done, enc.stop_reason, enc.response_id, enc.error) == (
        True, "end_turn", "resp_1", None)
    assert enc.feed(TextDelta("t", "more")) == [] and enc.finish() == []


def test_message_start_comes_with_the_first_event_when_start_was_not_called():
    enc = encoder()
    assert [e["type"] for e in enc.feed(Started())] == ["message_start"]
    assert enc.start() == []


def test_a_later_part_waits_until_the_earlier_one_is_done():
    enc, out = encode([
        TextDelta("a", "first "), ReasoningDelta("b", "held"), TextDelta("a", "still first"),
        TextDone("a"), ReasoningDone("b"), Finished("end")])
    check_stream(out, complete=True)
    kinds = [(e["type"], e.get("index")) for e in out]
    assert kinds.index(("content_block_stop", 0)) < kinds.index(("content_block_start", 1))
    assert block_texts(out) == {0: "first still first"}
    assert [b["type"] for b in block_starts(out)] == ["text", "thinking"]


def test_thinking_ends_with_its_signature():
    _, out = encode([ReasoningDelta("r", "think "), ReasoningDone("r", "think hard"),
                     Finished("end")])
    check_stream(out, complete=True)
    deltas = [e["delta"] for e in out if e["type"] == "content_block_delta"]
    assert deltas == [{"type": "thinking_delta", "thinking": "think "},
                      {"type": "thinking_delta", "thinking": "hard"},
                      {"type": "signature_delta", "signature": thinking_signature("think hard")}]


def test_a_whole_text_only_in_its_done_event():
    _, out = encode([TextDone("t", "whole"), ReasoningDone("r", None), Finished("end")])
    check_stream(out, complete=True)
    assert block_texts(out) == {0: "whole"}
    assert [b["type"] for b in block_starts(out)] == ["text"]  # no empty thinking block


def test_a_tool_call_opens_at_once_and_streams_its_arguments():
    enc = encoder()
    enc.start()
    assert enc.feed(ToolCallStarted("fc_1", "call_1", "Bash")) == [
        {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "call_1", "name": "Bash", "input": {}}}]
    assert enc.feed(ToolArgumentsDelta("fc_1", '{"command"')) == [
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "input_json_delta", "partial_json": '{"command"'}}]
    out = enc.feed(ToolCallDone("fc_1", '{"command": "ls"}'))
    assert out == [
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "input_json_delta", "partial_json": ': "ls"}'}},
        {"type": "content_block_stop", "index": 0}]
    assert final_delta(enc.feed(Finished("end")))["delta"]["stop_reason"] == "tool_use"


def test_arguments_of_an_unknown_call_are_dropped():
    _, out = encode([ToolArgumentsDelta("nope", "{}"), ToolCallDone("nope", "{}"),
                     TextDelta("t", "hi"), Finished("end")])
    check_stream(out, complete=True)
    assert [b["type"] for b in block_starts(out)] == ["text"]


def test_arguments_that_are_not_an_object_are_wrapped():
    _, out = encode([ToolCallStarted("k", "c", "Bash"), ToolArgumentsDelta("k", "ls "),
                     ToolArgumentsDelta("k", "-la"), Finished("end")])
    check_stream(out, complete=True)
    [wrapped] = [e["delta"]["partial_json"] for e in out
                 if e["type"] == "content_block_delta"]
    assert wrapped == '{"__lmsd_invalid_arguments": "ls -la"}'  # json.dumps' own spacing
    assert tool_inputs(out) == {0: {"__lmsd_invalid_arguments": "ls -la"}}


def test_blank_arguments_leave_the_input_empty():
    _, out = encode([ToolCallStarted("k", "c", "ListAgents"), ToolArgumentsDelta("k", " "),
                     ToolCallDone("k"), Finished("end")])
    assert tool_inputs(out) == {0: {}}


@pytest.mark.parametrize(("stop", "capped", "reason"), [
    ("end", False, "end_turn"), ("length", False, "max_tokens"),
    ("length", True, "end_turn"), ("filter", False, "refusal")])
def test_how_the_answer_finished(stop, capped, reason):
    _, out = encode([TextDelta("t", "x"), Finished(stop)], capped=capped)
    assert final_delta(out)["delta"]["stop_reason"] == reason


def test_without_usage_the_output_is_estimated_from_the_text():
    enc, out = encode([TextDelta("t", "x" * 35), Finished("end")], input_tokens=20)
    usage = final_delta(out)["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (20, 10)
    assert enc.usage == usage


def test_usage_counts_the_whole_context_with_cache_reads():
    _, out = encode([Finished("end", Usage(input_tokens=18_000, cached_tokens=17_000,
                                           output_tokens=5))], input_tokens=20_000)
    usage = final_delta(out)["usage"]
    assert (usage["input_tokens"], usage["cache_read_input_tokens"]) == (1_000, 17_000)


def test_finished_names_the_response_when_started_did_not():
    enc, _ = encode([Started(), Finished("end", None, "resp_9")])
    assert enc.response_id == "resp_9"


@pytest.mark.parametrize("pieces", [["a STOP b"], ["a ST", "OP b"], ["a S", "T", "O", "Px"]])
def test_a_stop_sequence_ends_the_turn_unseen(pieces):
    enc, out = encode([TextDelta("t", p) for p in pieces], stop_sequences=["STOP"])
    check_stream(out, complete=True)
    assert block_texts(out) == {0: "a "}
    assert (enc.stop_reason, enc.stop_sequence) == ("stop_sequence", "STOP")


def test_text_held_for_a_stop_sequence_is_released_when_the_text_is_done():
    enc = encoder(stop_sequences=["STOP"])
    enc.start()
    assert block_texts(enc.feed(TextDelta("t", "ends ST"))) == {0: "ends "}
    assert block_texts(enc.feed(TextDone("t"))) == {0: "ST"}


def test_a_failure_is_rendered_for_claude_code():
    enc, out = encode([TextDelta("t", "partial"), Failed(ContextOverflow(
        "too long", context_limit=4096))], input_tokens=5000)
    assert check_stream(out) == "error"
    assert out[-1]["error"] == {"type": "invalid_request_error",
                                "message": "prompt is too long: 5000 tokens > 4096 maximum"}
    assert enc.error is not None and enc.error.overflow


def test_a_stale_chain_that_reaches_the_client_shows_what_it_means_alone():
    failure = StaleChain("gone", upstream=UpstreamFailure("gone", kind="stale_chain"),
                         shown_as=UpstreamBroken("LM Studio error: gone"))
    enc, out = encode([Failed(failure)])
    assert out[-1]["error"] == {"type": "api_error", "message": "LM Studio error: gone"}
    assert (enc.error.status, enc.error.kind) == (502, "stale_chain")


def test_fail_renders_a_failure_once():
    enc = encoder()
    out = enc.fail(Overloaded("busy"))
    assert [e["type"] for e in out] == ["message_start", "error"]
    assert (enc.error.type, enc.error.status) == ("overloaded_error", 529)
    assert enc.fail(UpstreamTimeout("again")) == [] and enc.done
    other = encoder()
    other.start()
    assert other.fail(UpstreamTimeout("as is")) == [
        {"type": "error", "error": {"type": "api_error", "message": "as is"}}]
    assert other.error.status == 504


def test_a_stream_that_just_stops_is_an_error_naming_the_upstream():
    enc, out = encode([TextDelta("t", "half")], upstream_name="the upstream server")
    assert check_stream(out) == "error"
    assert out[-1]["error"] == {"type": "api_error", "message": "the upstream server closed "
                                "the stream before the response was complete"}
    assert (enc.error.status, enc.error.kind) == (500, "")


def test_a_plain_failure_keeps_api_error_500():
    enc, _ = encode([Failed(Failure("the upstream sent a tool call without a tool name"))])
    assert (enc.error.type, enc.error.status) == ("api_error", 500)


def test_one_key_for_two_kinds_makes_two_blocks():
    _, out = encode([ReasoningDelta("a", "hmm"), TextDelta("a", "answer"), Finished("end")])
    assert [b["type"] for b in block_starts(out)] == ["thinking", "text"]


def test_a_long_thinking_block_is_sent_piece_by_piece_and_signed_whole():
    pieces = [f"{n:05d}" for n in range(20_000)]
    _, out = encode([*(ReasoningDelta("r", p) for p in pieces), Finished("end")])
    sig = [e["delta"]["signature"] for e in out if e["type"] == "content_block_delta"
           and e["delta"]["type"] == "signature_delta"]
    assert sig == [thinking_signature("".join(pieces))]
