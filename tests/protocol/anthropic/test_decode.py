"""The upstream Messages decoder alone (``anthropic/decode.py``): an engine's events in,
pivot events out. The streams are written as llama-server, vLLM and Anthropic send them."""

from __future__ import annotations

import pytest

from lmsd.protocol.anthropic.decode import NAMELESS_CALL, MessagesDecoder
from lmsd.protocol.failures import ContextOverflow, Failure, UpstreamBroken
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
from tests.support.anthropic_checks import check_stream
from tests.support.pipelines import MessagesPipeline


def start(usage=None, message_id="chatcmpl-1"):
    return {"type": "message_start", "message": {
        "id": message_id, "type": "message", "role": "assistant", "content": [],
        "model": "m", "stop_reason": None, "stop_sequence": None,
        "usage": usage or {"input_tokens": 10, "output_tokens": 0}}}


def block(index, **content_block):
    return {"type": "content_block_start", "index": index, "content_block": content_block}


def delta(index, **d):
    return {"type": "content_block_delta", "index": index, "delta": d}


def stop(index):
    return {"type": "content_block_stop", "index": index}


def ending(reason, usage=None):
    return [{"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
             "usage": usage or {"output_tokens": 5}}, {"type": "message_stop"}]


def decode(*events, name=None):
    decoder = MessagesDecoder("msg_0123456789abcdef")
    return decoder, [e for ev in events for e in decoder.feed(ev, name)]


#: llama-server: the text block stays open while the call streams; blocks close at the end
LLAMA_SERVER = [
    start({"cache_read_input_tokens": 80, "input_tokens": 20, "output_tokens": 0}),
    block(0, type="thinking", thinking=""),
    delta(0, type="thinking_delta", thinking="plan"),
    block(1, type="text", text=""),
    delta(1, type="text_delta", text="Running."),
    block(2, type="tool_use", id="Xy7abc", name="Bash"),
    delta(2, type="input_json_delta", partial_json='{"command":'),
    delta(2, type="input_json_delta", partial_json='"ls"}'),
    delta(0, type="signature_delta", signature=""),
    stop(0), stop(1), stop(2),
    *ending("tool_use", {"output_tokens": 12}),
]


def test_llama_server_stream():
    decoder, out = decode(*LLAMA_SERVER)
    assert out == [
        Started("chatcmpl-1"),
        ReasoningDelta("thinking_0", "plan"),
        TextDelta("text_1", "Running."),
        ToolCallStarted("tool_2", "Xy7abc", "Bash"),
        ToolArgumentsDelta("tool_2", '{"command":'),
        ToolArgumentsDelta("tool_2", '"ls"}'),
        ReasoningDone("thinking_0"), TextDone("text_1"), ToolCallDone("tool_2"),
        # input_tokens excludes the cache reads: the whole context is their sum, and
        # input_tokens is what the engine prefilled
        Finished("end", Usage(input_tokens=100, cached_tokens=80, output_tokens=12,
                              prefilled_tokens=20)),
    ]
    assert decoder.done and decoder.feed(delta(1, type="text_delta", text="late")) == []
    assert decoder.ignored == {}


def test_anthropic_stream_with_pings_signatures_and_cumulative_usage():
    _, out = decode(
        start({"input_tokens": 3, "cache_read_input_tokens": 90,
               "cache_creation_input_tokens": 7, "output_tokens": 1}, "msg_abc"),
        {"type": "ping"},
        block(0, type="thinking", thinking="", signature=""),
        delta(0, type="thinking_delta", thinking="hmm"),
        delta(0, type="signature_delta", signature="sig"),
        stop(0),
        block(1, type="text", text=""), delta(1, type="text_delta", text="Hi"), stop(1),
        {"type": "ping"},
        *ending("end_turn", {"input_tokens": 3, "cache_read_input_tokens": 90,
                             "cache_creation_input_tokens": 7, "output_tokens": 4}))
    assert out == [Started("msg_abc"), ReasoningDelta("thinking_0", "hmm"),
                   ReasoningDone("thinking_0"), TextDelta("text_1", "Hi"), TextDone("text_1"),
                   Finished("end", Usage(100, 90, 4, prefilled_tokens=10))]


def test_vllm_puts_the_whole_input_in_message_delta():
    _, out = decode(start({"input_tokens": 0, "output_tokens": 0}),
                    block(0, type="text", text=""), delta(0, type="text_delta", text="x"),
                    stop(0), *ending("end_turn", {"input_tokens": 50, "output_tokens": 1}))
    assert out[-1] == Finished("end", Usage(50, 0, 1))


@pytest.mark.parametrize(("reason", "stop_kind"), [
    ("end_turn", "end"), ("tool_use", "end"), ("stop_sequence", "end"), ("pause_turn", "end"),
    ("max_tokens", "length"), ("model_context_window_exceeded", "length"),
    ("refusal", "filter"), (None, "end")])
def test_stop_reasons(reason, stop_kind):
    _, out = decode(start(), block(0, type="text", text=""),
                    delta(0, type="text_delta", text="x"), *ending(reason))
    assert out[-2:] == [TextDone("text_0"), Finished(stop_kind, Usage(10, 0, 5))]


def test_a_call_whose_start_carries_its_whole_input():
    _, out = decode(start(), block(0, type="tool_use", id="toolu_1", name="Read",
                                   input={"path": "a"}), stop(0))
    assert out[1:] == [ToolCallStarted("tool_0", "toolu_1", "Read"),
                       ToolCallDone("tool_0", '{"path":"a"}')]
    _, out = decode(start(), block(0, type="tool_use", id="toolu_1", name="Read",
                                   input={"path": "a"}),
                    delta(0, type="input_json_delta", partial_json='{"path":"b"}'), stop(0))
    assert out[-1] == ToolCallDone("tool_0")  # the deltas are the arguments


def test_a_call_without_an_id_gets_one_and_one_without_a_name_fails():
    _, out = decode(start(), block(0, type="tool_use", name="Bash"),
                    block(1, type="tool_use", id="", name="Bash"))
    assert [e.call_id for e in out if isinstance(e, ToolCallStarted)] == [
        "call_lmsd_456789abcdef_1", "call_lmsd_456789abcdef_2"]
    decoder, out = decode(start(), block(0, type="tool_use", id="t", name=""))
    assert isinstance(out[-1], Failed) and out[-1].error.message.endswith(NAMELESS_CALL)
    assert decoder.done


def test_a_reused_index_stays_two_parts():
    """llama-server numbers the text block 0 until reasoning appears, then the thinking
    block is 0 too; a call started before any text shares its index with the text."""
    _, out = decode(start(), block(0, type="text", text=""),
                    delta(0, type="text_delta", text="a"),
                    block(0, type="thinking", thinking=""),
                    delta(0, type="thinking_delta", thinking="b"),
                    delta(1, type="text_delta", text="c"), stop(0), stop(1),
                    *ending("end_turn"))
    assert out[1:4] == [TextDelta("text_0", "a"), ReasoningDelta("thinking_0", "b"),
                        TextDelta("text_1", "c")]
    assert set(out[4:7]) == {TextDone("text_0"), ReasoningDone("thinking_0"),
                             TextDone("text_1")}


def test_text_in_a_block_start_and_blocks_left_open_at_the_end():
    _, out = decode(start(), block(0, type="text", text="whole"), *ending("end_turn"))
    assert out == [Started("chatcmpl-1"), TextDelta("text_0", "whole"), TextDone("text_0"),
                   Finished("end", Usage(10, 0, 5))]


def test_errors_of_each_shape():
    # llama-server mid-stream: its flat error object, named by the SSE event
    decoder = MessagesDecoder("msg_1")
    assert decoder.feed(start(), "message_start") == [Started("chatcmpl-1")]
    [failed] = decoder.feed({"code": 400, "type": "exceed_context_size_error",
                             "message": "request (9000 tokens) exceeds the available "
                                        "context size (8192 tokens), try increasing it",
                             "n_prompt_tokens": 9000, "n_ctx": 8192}, "error")
    error = failed.error
    assert isinstance(error, ContextOverflow)
    assert (error.prompt_tokens, error.context_limit) == (9000, 8192)
    # Anthropic's shape
    _, out = decode({"type": "error", "error": {
        "type": "invalid_request_error", "message": "prompt is too long: 5000 tokens > 4096 "
                                                    "maximum"}})
    assert isinstance(out[0].error, ContextOverflow) and out[0].error.context_limit == 4096
    _, out = decode({"type": "error", "error": {"type": "overloaded_error",
                                                "message": "Overloaded"}})
    assert isinstance(out[0].error, UpstreamBroken)
    assert out[0].error.message == "the upstream server error: Overloaded"


def test_a_cut_stream_fails_and_one_that_said_how_it_stopped_is_complete():
    decoder, out = decode(start(), block(0, type="text", text=""),
                          delta(0, type="text_delta", text="par"))
    [failed] = decoder.finish()
    assert type(failed.error) is Failure
    assert failed.error.message == ("the upstream server closed the stream before the "
                                    "response was complete")
    assert decoder.finish() == []
    decoder, _ = decode(start(), *ending("max_tokens")[:1])
    assert decoder.finish() == [Finished("length", Usage(10, 0, 5))]


def test_malformed_and_unknown_events_are_counted_not_guessed():
    decoder, out = decode(start(), block("x", type="text"),
                          delta(0, type="input_json_delta", partial_json="{}"),
                          delta(0, type="citations_delta", citation={}),
                          delta(0, type="mystery_delta"),
                          block(1, type="redacted_thinking", data="..."),
                          {"type": "something_new"}, {"no": "type"})
    assert out == [Started("chatcmpl-1")]
    assert decoder.ignored == {"malformed content_block_start": 1,
                               "malformed content_block_delta": 1, "delta mystery_delta": 1,
                               "block redacted_thinking": 1, "something_new": 1, "None": 1}


def test_content_before_message_start_still_starts_the_answer():
    _, out = decode(block(0, type="text", text=""), delta(0, type="text_delta", text="x"))
    assert out == [Started(None), TextDelta("text_0", "x")]


def test_a_whole_message_instead_of_a_stream():
    decoder = MessagesDecoder("msg_1")
    out = decoder.whole({"id": "msg_w", "type": "message", "role": "assistant", "content": [
        {"type": "thinking", "thinking": "t", "signature": ""},
        {"type": "text", "text": "hello"},
        {"type": "tool_use", "id": "toolu_9", "name": "Bash", "input": {"command": "ls"}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 4, "cache_read_input_tokens": 6, "output_tokens": 2}})
    assert out == [Started("msg_w"), ReasoningDelta("thinking_0", "t"),
                   ReasoningDone("thinking_0"), TextDelta("text_1", "hello"),
                   TextDone("text_1"), ToolCallStarted("tool_2", "toolu_9", "Bash"),
                   ToolCallDone("tool_2", '{"command":"ls"}'),
                   Finished("end", Usage(10, 6, 2, prefilled_tokens=4))]
    [failed] = MessagesDecoder("m").whole({"error": "Unexpected endpoint or method. (POST "
                                                    "/v1/messages). Returning 200 anyway"})
    assert failed.error.message.startswith("the upstream server error: Unexpected endpoint")


def test_through_the_anthropic_encoder_the_client_gets_a_valid_stream():
    """llama-server's interleaved blocks, serialized for Claude Code."""
    pipeline = MessagesPipeline()
    out = pipeline.start()
    for event in LLAMA_SERVER:
        out += pipeline.feed(event)
    out += pipeline.finish()
    assert check_stream(out) == "complete"
    assert [e["content_block"]["type"] for e in out if e["type"] == "content_block_start"] \
        == ["thinking", "text", "tool_use"]
    assert out[-2]["delta"]["stop_reason"] == "tool_use"
    assert out[-2]["usage"]["cache_read_input_tokens"] == 80


# -- what the engine prefilled ----------------------------------------------------------------


def test_llama_servers_cache_reads_say_what_it_prefilled():
    """llama-server always reports its cache reads in message_start (0 on a cold cache),
    with input_tokens the rest: what it computed."""
    _, out = decode(start({"cache_read_input_tokens": 0, "input_tokens": 640,
                           "output_tokens": 0}),
                    block(0, type="text", text=""), delta(0, type="text_delta", text="x"),
                    *ending("end_turn", {"output_tokens": 1}))
    assert out[-1] == Finished("end", Usage(640, 0, 1, prefilled_tokens=640))


def test_no_cache_reads_reported_no_prefill_known():
    """vLLM, Ollama: no cache_read_input_tokens, so nothing says what was computed."""
    _, out = decode(start({"input_tokens": 0, "output_tokens": 0}),
                    block(0, type="text", text=""), delta(0, type="text_delta", text="x"),
                    *ending("end_turn", {"input_tokens": 50, "output_tokens": 1}))
    assert out[-1].usage.prefilled_tokens is None and out[-1].usage.prefill_ms is None


def test_timings_on_a_messages_event_are_the_engines_prefill():
    """llama.cpp's timings, should a server put them on its last events, win."""
    end = ending("end_turn", {"output_tokens": 1})
    end[0]["timings"] = {"cache_n": 80, "prompt_n": 21, "prompt_ms": 300.0}
    _, out = decode(start({"cache_read_input_tokens": 80, "input_tokens": 20}),
                    block(0, type="text", text=""), delta(0, type="text_delta", text="x"),
                    *end)
    assert out[-1] == Finished("end", Usage(100, 80, 1, prefilled_tokens=21,
                                            prefill_ms=300.0))


def test_a_message_stop_after_nothing_and_no_stop_reason_is_a_cut_answer():
    """No content and no ``stop_reason``: the engine ended the answer without finishing it,
    never an empty ``end_turn``."""
    decoder = MessagesDecoder("msg_0123456789abcdef", upstream_name="the upstream server")
    out = [e for ev in (start(), {"type": "message_stop"}) for e in decoder.feed(ev)]
    [failed] = out[1:]
    assert isinstance(failed, Failed) and isinstance(failed.error, UpstreamBroken)
    assert failed.error.message.startswith(
        "the engine ended the answer without finishing it (no output, no finish reason)")
    assert decoder.finish() == []


def test_an_empty_answer_with_a_stop_reason_is_still_an_answer():
    decoder = MessagesDecoder("msg_0123456789abcdef")
    out = [e for ev in (start(), {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
                        {"type": "message_stop"}) for e in decoder.feed(ev)]
    assert isinstance(out[-1], Finished) and out[-1].stop == "end"
