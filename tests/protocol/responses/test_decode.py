"""The Responses decoder alone: upstream events in, pivot events out."""

from __future__ import annotations

import pytest

from lmsd.protocol.failures import (
    ChainingUnsupported,
    ContextOverflow,
    Failure,
    StaleChain,
    UpstreamBroken,
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
from lmsd.protocol.responses.decode import ResponsesDecoder
from tests.support.upstream_streams import Text, lmstudio_events


def decode(events, **settings):
    decoder = ResponsesDecoder("msg_0123456789abcdef", **settings)
    return decoder, [p for e in events for p in decoder.feed(e)]


def test_an_lmstudio_text_stream():
    usage = {"input_tokens": 90, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 80}}
    events = lmstudio_events(Text("Hello"), usage=usage, chunk_size=3)
    rid = events[0]["response"]["id"]
    decoder, out = decode(events)
    key = f"{events[2]['item']['id']}/0"
    assert out == [Started(rid), TextDelta(key, "Hel"), TextDelta(key, "lo"),
                   TextDone(key, "Hello"), TextDone(key, "Hello"),
                   Finished("end", Usage(90, 80, 2, prefilled_tokens=10), rid)]
    assert decoder.ignored == {"response.in_progress": 1, "response.content_part.added": 1,
                               "response.content_part.done": 1}


def test_a_tool_call_is_keyed_by_its_item_and_named_by_its_call_id():
    _, out = decode([
        {"type": "response.output_item.added", "output_index": 0, "item": {
            "id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "Bash",
            "arguments": ""}},
        {"type": "response.function_call_arguments.delta", "output_index": 0, "delta": "{}"},
        {"type": "response.function_call_arguments.done", "item_id": "fc_1", "arguments": "{}"},
        {"type": "response.output_item.done", "output_index": 0, "item": {
            "id": "fc_1", "type": "function_call", "name": "Bash", "arguments": "{}"}}])
    assert out == [ToolCallStarted("fc_1", "call_1", "Bash"), ToolArgumentsDelta("fc_1", "{}"),
                   ToolCallDone("fc_1", "{}"), ToolCallDone("fc_1", "{}")]


def test_arguments_given_whole_in_the_added_event_come_as_one_delta():
    _, out = decode([{"type": "response.output_item.added", "item": {
        "id": "fc_1", "type": "function_call", "call_id": "c", "name": "Read",
        "arguments": '{"p":1}'}}])
    assert out == [ToolCallStarted("fc_1", "c", "Read"), ToolArgumentsDelta("fc_1", '{"p":1}')]


def test_a_call_without_a_call_id_takes_its_item_id_else_one_of_lmsds():
    _, out = decode([
        {"type": "response.output_item.added", "item": {
            "id": "fc_1", "type": "function_call", "name": "Bash"}},
        {"type": "response.output_item.added", "output_index": 1, "item": {
            "type": "function_call", "name": "Bash"}}])
    assert out == [ToolCallStarted("fc_1", "fc_1", "Bash"),
                   ToolCallStarted("#1", "call_lmsd_456789abcdef_1", "Bash")]


def test_a_call_announced_only_by_its_done_event():
    _, out = decode([{"type": "response.output_item.done", "item": {
        "id": "fc_9", "type": "function_call", "call_id": "c9", "name": "Bash",
        "arguments": '{"a":1}'}}])
    assert out == [ToolCallStarted("fc_9", "c9", "Bash"), ToolArgumentsDelta("fc_9", '{"a":1}'),
                   ToolCallDone("fc_9", '{"a":1}')]


def test_a_call_without_a_name_is_a_failure():
    _, [failed] = decode([{"type": "response.output_item.added", "item": {
        "id": "fc_1", "type": "function_call", "call_id": "c1"}}])
    assert isinstance(failed, Failed) and type(failed.error) is Failure
    assert failed.error.message == "the upstream sent a tool call without a tool name"


def test_events_without_ids_follow_output_index_then_the_latest_part():
    _, out = decode([
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"id": "msg_a", "type": "message"}},
        {"type": "response.output_text.delta", "output_index": 0, "content_index": 0,
         "delta": "by index"},
        {"type": "response.output_item.added", "output_index": 1,
         "item": {"id": "rs_b", "type": "reasoning"}},
        {"type": "response.reasoning_text.delta", "delta": "by kind"}])
    assert out == [TextDelta("msg_a/0", "by index"), ReasoningDelta("rs_b/0", "by kind")]


def test_message_parts_and_refusals_in_the_done_item():
    _, out = decode([{"type": "response.output_item.done", "output_index": 0, "item": {
        "id": "msg_1", "type": "message", "content": [
            {"type": "output_text", "text": "one"}, {"type": "refusal", "refusal": "no"},
            {"type": "other"}]}}])
    assert out == [TextDone("#0/0", "one"), TextDone("#0/1", "no")]


def test_reasoning_summaries_when_there_is_no_reasoning_text():
    _, out = decode([
        {"type": "response.reasoning_summary_text.delta", "item_id": "rs", "summary_index": 1,
         "delta": "sum"},
        {"type": "response.output_item.done", "item": {
            "id": "rs", "type": "reasoning", "summary": [{"text": "a"}, {"text": "sum"}]}}])
    assert out == [ReasoningDelta("rs/s1", "sum"), ReasoningDone("rs/s0", "a"),
                   ReasoningDone("rs/s1", "sum")]


def test_incomplete_is_length_or_filter():
    for reason, stop in (("max_output_tokens", "length"), ("content_filter", "filter")):
        _, [finished] = decode([{"type": "response.incomplete", "response": {
            "id": "r", "incomplete_details": {"reason": reason}}}])
        assert finished == Finished(stop, None, "r")


def test_completed_at_the_output_limit_is_length():
    """llama-server says ``completed`` when it stopped at ``max_output_tokens``."""
    def completed(output_tokens):
        return [{"type": "response.completed", "response": {"id": "r", "status": "completed",
                 "usage": {"input_tokens": 5, "output_tokens": output_tokens}}}]

    usage = Usage(input_tokens=5, output_tokens=8)
    assert decode(completed(8), max_output_tokens=8)[1] == [Finished("length", usage, "r")]
    assert decode(completed(8))[1] == [Finished("end", usage, "r")]  # no limit known
    lmstudio = completed(8)
    lmstudio[0]["response"]["incomplete_details"] = None  # a server that has "incomplete"
    assert decode(lmstudio, max_output_tokens=8)[1] == [Finished("end", usage, "r")]
    short = Usage(input_tokens=5, output_tokens=3)
    assert decode(completed(3), max_output_tokens=8)[1] == [Finished("end", short, "r")]


def test_error_events_become_neutral_failures_named_after_the_upstream():
    _, out = decode([
        {"type": "error", "code": "server_error", "message": "engine crashed"},
        {"type": "error", "message": "n_keep (5000) >= n_ctx (4096)"},
        {"type": "error", "code": "previous_response_not_found",
         "message": "Previous response with id 'r' not found."},
        {"type": "error", "message": "llama-server does not support previous_response_id"},
        {"type": "response.failed", "response": {"error": {"message": "model crashed"}}},
    ], upstream_name="the upstream server")
    errors = [e.error for e in out]
    assert [type(e) for e in errors] == [UpstreamBroken, ContextOverflow, StaleChain,
                                         ChainingUnsupported, UpstreamBroken]
    assert errors[0].message == "the upstream server error: engine crashed"
    assert (errors[1].prompt_tokens, errors[1].context_limit) == (5000, 4096)
    assert errors[4].message == "the upstream server error: model crashed"


def test_unknown_and_malformed_events_are_counted_and_yield_nothing():
    decoder, out = decode([
        {"type": "response.lmstudio.prompt_progress"}, {"type": 7}, {},
        {"type": "response.output_item.added", "item": "not an object"},
        {"type": "response.completed", "response": {"usage": {"output_tokens": "many"}}}])
    assert out == []
    assert decoder.ignored == {"response.lmstudio.prompt_progress": 1, "7": 1, "None": 1,
                               "malformed response.output_item.added": 1,
                               "malformed response.completed": 1}


# -- what the engine prefilled ----------------------------------------------------------------


def test_lm_studios_cached_zero_says_nothing_of_the_prefill():
    """lms#553: LM Studio's cached_tokens sometimes sticks at 0, so input - 0 would claim
    a full prefill that may not have happened."""
    usage = {"input_tokens": 900, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 0}}
    _, out = decode(lmstudio_events(Text("Hello"), usage=usage))
    assert out[-1].usage == Usage(900, 0, 2)
    assert out[-1].usage.prefilled_tokens is None


def test_an_input_count_below_the_cached_one_is_the_uncached_part():
    """Read as ``tokens.context_usage`` reads it: the input counted only what was new."""
    usage = {"input_tokens": 30, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 870}}
    _, out = decode(lmstudio_events(Text("Hello"), usage=usage))
    assert out[-1].usage.prefilled_tokens == 30


@pytest.mark.parametrize("incomplete", [False, True])
def test_llama_servers_timings_beside_the_final_response(incomplete):
    """llama-server puts ``timings`` in its response.completed event's data, beside the
    response: they say what it computed, even with a cached count of 0."""
    usage = {"input_tokens": 900, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 0}}
    events = lmstudio_events(Text("Hello"), usage=usage, incomplete=incomplete)
    events[-1]["timings"] = {"cache_n": 0, "prompt_n": 900, "prompt_ms": 4100.25}
    _, out = decode(events)
    assert out[-1].usage == Usage(900, 0, 2, prefilled_tokens=900, prefill_ms=4100.25)


def test_a_stream_that_ends_with_nothing_and_no_completion_is_a_cut_answer():
    """``response.created`` and then the end of the body: no output, no
    ``response.completed``. Named as the engine's unfinished answer."""
    created = {"type": "response.created", "response": {"id": "resp_1"}}
    decoder, out = decode([created])
    assert out == [Started("resp_1")]
    [failed] = decoder.finish()
    assert isinstance(failed, Failed) and isinstance(failed.error, UpstreamBroken)
    assert failed.error.message.startswith(
        "the engine ended the answer without finishing it (no output, no finish reason)")
    assert decoder.finish() == []


def test_finish_adds_nothing_after_a_completion_or_after_output():
    """A completed answer needs nothing more; one cut after some output is the
    encoder's to report (it closed the stream before the response was complete)."""
    decoder, _ = decode(lmstudio_events(Text("Hello")))
    assert decoder.finish() == []
    cut, _ = decode(lmstudio_events(Text("Hello"))[:5])
    assert cut.output and cut.finish() == []
