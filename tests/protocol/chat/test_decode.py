"""The chat-chunk decoder alone: ``data:`` payloads in, pivot events out."""

from __future__ import annotations

import json

import pytest

from lmsd.protocol.chat.decode import ChatDecoder
from lmsd.protocol.failures import ContextOverflow, UpstreamBroken
from lmsd.protocol.pivot import (
    Failed,
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolArgumentsDelta,
    ToolCallStarted,
    Usage,
)


def delta(**d):
    return json.dumps({"id": "c1", "choices": [{"index": 0, "delta": d}]})


def finish(reason):
    return json.dumps({"id": "c1", "choices": [{"index": 0, "delta": {},
                                                "finish_reason": reason}]})


def decode(*payloads, name="the upstream server"):
    decoder = ChatDecoder("msg_0123456789abcdef", upstream_name=name)
    return decoder, [e for p in payloads for e in decoder.feed(p)]


def test_text_reasoning_usage_and_the_end():
    usage = json.dumps({"id": "c1", "choices": [], "usage": {
        "prompt_tokens": 90, "completion_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 80}}})
    decoder, out = decode(delta(role="assistant"), delta(reasoning_content="hmm"),
                          delta(reasoning="ok"), delta(content="Hi"), finish("stop"),
                          usage, "[DONE]")
    assert out == [Started("c1"), ReasoningDelta("rs_0", "hmm"), ReasoningDelta("rs_0", "ok"),
                   TextDelta("msg_0", "Hi"), Finished("end", Usage(90, 80, 3))]
    assert decoder.done and decoder.feed(delta(content="late")) == []


def test_a_chunk_without_an_id_starts_with_the_message_id():
    _, out = decode(json.dumps({"choices": []}))
    assert out == [Started("msg_0123456789abcdef")]


@pytest.mark.parametrize(("reason", "stop"), [
    ("length", "length"), ("content_filter", "filter"), ("tool_calls", "end"),
    ("stop", "end")])
def test_the_finish_reason_decides_the_ending(reason, stop):
    _, out = decode(delta(content="x"), finish(reason), "[DONE]")
    assert out[-1] == Finished(stop)


def test_tool_calls_in_index_order_whatever_order_their_names_come_in():
    _, out = decode(
        delta(tool_calls=[{"index": 0, "id": "a", "function": {"arguments": '{"x":'}},
                          {"index": 1, "id": "b", "function": {"name": "Read",
                                                               "arguments": '{"p":1}'}}]),
        delta(tool_calls=[{"index": 0, "function": {"name": "Bash", "arguments": "1}"}}]))
    assert out[1:] == [ToolCallStarted("fc_0", "a", "Bash"), ToolArgumentsDelta("fc_0", '{"x":1}'),
                       ToolCallStarted("fc_1", "b", "Read"), ToolArgumentsDelta("fc_1", '{"p":1}')]


def test_growing_snapshots_become_fragments_and_a_missing_id_is_made_up():
    _, out = decode(
        delta(tool_calls=[{"index": 2, "function": {"name": "Bash", "arguments": '{"c"'}}]),
        delta(tool_calls=[{"index": 2, "function": {"arguments": '{"c": 1}'}}]))
    assert out[1:] == [ToolCallStarted("fc_2", "call_456789abcdef_2", "Bash"),
                       ToolArgumentsDelta("fc_2", '{"c"'), ToolArgumentsDelta("fc_2", ": 1}")]


def test_a_call_whose_name_never_comes_fails_at_the_end():
    _, out = decode(delta(tool_calls=[{"index": 0, "function": {"arguments": "{}"}}]),
                    finish("tool_calls"), "[DONE]", name="vLLM")
    [failed] = out[1:]
    assert isinstance(failed, Failed) and type(failed.error) is UpstreamBroken
    assert failed.error.message == "vLLM error: the upstream sent a tool call without a tool name"


@pytest.mark.parametrize(("payload", "message"), [
    ({"error": {"message": "boom", "type": "server_error"}}, "the upstream server error: boom"),
    ({"object": "error", "message": "flat", "type": "BadRequestError", "code": 500},
     "the upstream server error: flat"),
    ({"error": " Unexpected endpoint "}, "the upstream server error: Unexpected endpoint"),
])
def test_error_chunks_of_every_shape_end_the_stream(payload, message):
    decoder, out = decode(json.dumps(payload), "[DONE]")
    started, failed = out
    assert isinstance(started, Started) and isinstance(failed, Failed)
    assert failed.error.message == message
    assert decoder.done and decoder.finish() == []


def test_an_overflow_error_chunk_carries_its_counts():
    _, out = decode(json.dumps({"object": "error", "message": (
        "This model's maximum context length is 4096 tokens. However, your request has 5000 "
        "input tokens.")}))
    error = out[-1].error
    assert isinstance(error, ContextOverflow)
    assert (error.prompt_tokens, error.context_limit) == (5000, 4096)


def test_the_end_of_the_body_without_done():
    decoder, _ = decode(delta(content="x"), finish("length"))
    assert decoder.finish() == [Finished("length")] and decoder.finish() == []
    cut, _ = decode(delta(content="x"))
    assert cut.finish() == []  # no finish_reason: cut off, the encoder reports it


def test_empty_and_unparsable_payloads():
    decoder, out = decode("not json", "[1, 2]")
    assert out == [] and decoder.empty
    assert not decode(delta())[0].empty


# -- what the engine prefilled: llama-server's timings (server_slot_stats::to_json) ---------

TIMINGS = {"cache_n": 950, "prompt_n": 50, "prompt_ms": 812.5, "prompt_per_token_ms": 16.25,
           "prompt_per_second": 61.5, "predicted_n": 3, "predicted_ms": 40.1,
           "predicted_per_token_ms": 13.4, "predicted_per_second": 74.8}


def test_llama_servers_timings_on_its_usage_chunk_say_what_it_prefilled():
    """With include_usage the usage chunk is the last one, and carries the timings."""
    usage = json.dumps({"id": "c1", "choices": [], "timings": TIMINGS, "usage": {
        "prompt_tokens": 1000, "completion_tokens": 3, "total_tokens": 1003,
        "prompt_tokens_details": {"cached_tokens": 950}}})
    _, out = decode(delta(role="assistant"), delta(content="Hi"), finish("stop"), usage,
                    "[DONE]")
    assert out[-1] == Finished("end", Usage(1000, 950, 3, prefilled_tokens=50,
                                            prefill_ms=812.5))


def test_the_cached_count_comes_from_timings_when_the_usage_has_none():
    usage = json.dumps({"id": "c1", "choices": [], "timings": TIMINGS, "usage": {
        "prompt_tokens": 1000, "completion_tokens": 3}})
    _, out = decode(delta(content="Hi"), finish("stop"), usage, "[DONE]")
    assert out[-1] == Finished("end", Usage(1000, 950, 3, prefilled_tokens=50,
                                            prefill_ms=812.5))


def test_a_usage_cached_count_stands_beside_the_timings():
    """The usage's own cached count is the client's figure; timings add the prefill."""
    usage = json.dumps({"id": "c1", "choices": [], "timings": TIMINGS, "usage": {
        "prompt_tokens": 1000, "completion_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 0}}})
    _, out = decode(delta(content="Hi"), finish("stop"), usage, "[DONE]")
    assert out[-1] == Finished("end", Usage(1000, 0, 3, prefilled_tokens=50,
                                            prefill_ms=812.5))


def test_timings_on_the_finish_chunk_without_a_usage_chunk():
    """Without include_usage llama-server puts the timings on the finish chunk: they are
    the engine's own count of the whole prompt."""
    last = json.dumps({"id": "c1", "timings": TIMINGS, "choices": [
        {"index": 0, "delta": {}, "finish_reason": "length"}]})
    _, out = decode(delta(content="Hi"), last, "[DONE]")
    assert out[-1] == Finished("length", Usage(1000, 950, 3, prefilled_tokens=50,
                                               prefill_ms=812.5))


def test_timings_per_token_the_last_one_counts():
    early = json.dumps({"id": "c1", "timings": {**TIMINGS, "prompt_n": 7, "prompt_ms": 1.0},
                        "choices": [{"index": 0, "delta": {"content": "H"}}]})
    usage = json.dumps({"id": "c1", "choices": [], "timings": TIMINGS,
                        "usage": {"prompt_tokens": 1000, "completion_tokens": 3}})
    _, out = decode(early, delta(content="i"), finish("stop"), usage, "[DONE]")
    assert out[-1].usage.prefilled_tokens == 50 and out[-1].usage.prefill_ms == 812.5


def test_llama_cpp_python_says_nothing_of_its_cache():
    """Its usage has prompt_tokens only: nothing prefilled is known."""
    usage = json.dumps({"id": "c1", "choices": [],
                        "usage": {"prompt_tokens": 1000, "completion_tokens": 3}})
    _, out = decode(delta(content="Hi"), finish("stop"), usage, "[DONE]")
    assert out[-1] == Finished("end", Usage(1000, 0, 3))
    assert out[-1].usage.prefilled_tokens is None and out[-1].usage.prefill_ms is None


@pytest.mark.parametrize("timings", ["fast", None, [], {"prompt_n": "50", "cache_n": -1,
                                                        "prompt_ms": True}])
def test_malformed_timings_are_no_count(timings):
    usage = json.dumps({"id": "c1", "choices": [], "timings": timings,
                        "usage": {"prompt_tokens": 1000, "completion_tokens": 3}})
    _, out = decode(delta(content="Hi"), finish("stop"), usage, "[DONE]")
    assert out[-1] == Finished("end", Usage(1000, 0, 3))


def role_chunk():
    return json.dumps({"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant"}}]})


def test_done_after_nothing_and_no_finish_reason_is_a_cut_answer():
    """llama-cpp-python, interrupted by another request (its default
    ``interrupt_requests``), sends the role chunk and ``[DONE]``: no output and no
    ``finish_reason``. That is a broken answer, never an empty ``end``."""
    decoder, out = decode(role_chunk(), "[DONE]", name="the upstream server")
    assert out[0] == Started("c1")
    [failed] = out[1:]
    assert isinstance(failed, Failed) and isinstance(failed.error, UpstreamBroken)
    assert failed.error.message == ("the engine ended the answer without finishing it (no "
                                    "output, no finish reason) (the upstream server)")
    assert decoder.done and decoder.finish() == []


def test_an_empty_answer_with_a_finish_reason_is_still_an_answer():
    _, out = decode(role_chunk(), finish("stop"), "[DONE]")
    assert out == [Started("c1"), Finished("end", None)]


def test_text_without_a_finish_reason_still_ends():
    """Output came: what there is of the answer stands (only an empty one is refused)."""
    _, out = decode(role_chunk(), delta(content="hi"), "[DONE]")
    assert out == [Started("c1"), TextDelta("msg_0", "hi"), Finished("end", None)]
