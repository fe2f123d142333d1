"""The chat client face's encoder and reply alone: pivot events in, chunks out; and the
reply's turn is exactly what the front reads back when the client echoes the answer."""

from __future__ import annotations

import json

from lmsd.protocol.chain import ChainNode
from lmsd.protocol.chat.encode import DONE, ChatEncoder, encode_sse
from lmsd.protocol.chat.front import validate_chat_request
from lmsd.protocol.chat.reply import ChatReply
from lmsd.protocol.failures import ContextOverflow, UpstreamBroken
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
from lmsd.protocol.plan import next_node, plan_turn

BASH = {"type": "function", "function": {"name": "Bash", "parameters": {"type": "object"}}}


def encoder(**kw):
    return ChatEncoder(completion_id="chatcmpl-1", model="m", created=7, input_tokens=100,
                       **kw)


def run(enc, *events):
    return enc.start() + [c for e in events for c in enc.feed(e)] + enc.finish()


def deltas(out):
    return [c["choices"][0]["delta"] for c in out if isinstance(c, dict) and c.get("choices")]


ANSWER = (Started("resp_1"), TextDelta("t", "Hel"), TextDelta("t", "lo"), TextDone("t"),
          ToolCallStarted("c", "call_9", "Bash"), ToolArgumentsDelta("c", '{"command"'),
          ToolCallDone("c", '{"command":"ls"}'),
          Finished("end", Usage(input_tokens=10, cached_tokens=30, output_tokens=5), "resp_1"))


def test_the_chunk_grammar():
    out = run(encoder(include_usage=True), *ANSWER)
    assert out[-1] == DONE
    chunks = out[:-1]
    assert all(c["id"] == "chatcmpl-1" and c["object"] == "chat.completion.chunk"
               and c["created"] == 7 and c["model"] == "m" for c in chunks)
    assert deltas(out) == [
        {"role": "assistant", "content": ""}, {"content": "Hel"}, {"content": "lo"},
        {"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
                         "function": {"name": "Bash", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"command"'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": ':"ls"}'}}]},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]][-1] == "tool_calls"
    usage = chunks[-1]
    assert usage["choices"] == []
    # the whole context: the estimate stands in for LM Studio's uncached-only count
    assert usage["usage"] == {"prompt_tokens": 100, "completion_tokens": 5,
                              "total_tokens": 105,
                              "prompt_tokens_details": {"cached_tokens": 30},
                              "completion_tokens_details": {"reasoning_tokens": 0}}


def test_sse_framing():
    assert encode_sse([{"a": "é"}, DONE]) == 'data: {"a":"é"}\n\ndata: [DONE]\n\n'.encode()


def test_reasoning_only_when_asked():
    events = (ReasoningDelta("r", "hmm"), ReasoningDone("r", "hmm, yes"), TextDelta("t", "x"),
              Finished("end"))
    assert [d for d in deltas(run(encoder(), *events)) if "reasoning_content" in d] == []
    shown = [d["reasoning_content"] for d in deltas(run(encoder(reasoning=True), *events))
             if "reasoning_content" in d]
    assert shown == ["hmm", ", yes"]


def test_finish_reasons():
    assert deltas(run(encoder(), TextDelta("t", "x"), Finished("length")))[-1] == {}
    for stop, reason in (("end", "stop"), ("length", "length"), ("filter", "content_filter")):
        enc = encoder()
        run(enc, TextDelta("t", "x"), Finished(stop))
        assert enc.finish_reason == reason
    capped = encoder(capped=True)
    run(capped, TextDelta("t", "x"), Finished("length"))
    assert capped.finish_reason == "stop"


def test_stop_sequences_are_cut_and_never_shown():
    enc = encoder(stop=("END",))
    out = run(enc, TextDelta("t", "abc E"), TextDelta("t", "ND more"), Finished("end"))
    assert "".join(d.get("content", "") for d in deltas(out)) == "abc "
    assert enc.finish_reason == "stop" and enc.stop_sequence == "END"
    assert not ChatReply(enc).chainable  # the upstream holds more than the client


def test_empty_arguments_become_an_object():
    out = run(encoder(), ToolCallStarted("c", "call_1", "Bash"), ToolCallDone("c"),
              Finished("end"))
    assert {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]} in deltas(out)


def test_a_failure_mid_stream_is_an_error_object_and_no_done():
    out = run(encoder(), TextDelta("t", "x"), Failed(UpstreamBroken("engine died")))
    assert out[-1] == {"error": {"message": "engine died", "type": "server_error",
                                 "param": None, "code": "upstream_error"}}
    assert DONE not in out
    cut = run(encoder(), TextDelta("t", "x"))
    assert "closed the stream" in cut[-1]["error"]["message"]


def test_an_overflow_is_context_length_exceeded():
    enc = encoder()
    out = run(enc, Failed(ContextOverflow("x", prompt_tokens=500, context_limit=400)))
    assert out[-1]["error"]["code"] == "context_length_exceeded"
    reply = ChatReply(enc)
    try:
        reply.result()
    except ContextOverflow:
        pass
    else:
        raise AssertionError("result() must raise the failure")


def test_the_whole_completion():
    reply = ChatReply(encoder())
    run(reply, *ANSWER)
    body = reply.result()
    assert body["object"] == "chat.completion" and body["choices"][0]["finish_reason"] == (
        "tool_calls")
    assert body["choices"][0]["message"] == {
        "role": "assistant", "content": "Hello",
        "tool_calls": [{"id": "call_9", "type": "function",
                        "function": {"name": "Bash", "arguments": '{"command":"ls"}'}}]}
    assert reply.chainable and reply.response_id == "resp_1" and reply.output_started


def test_the_reply_turn_is_what_the_echo_reads_back_so_chains_verify():
    """The answer stored as a chain node hashes like the next request's history prefix."""
    first = {"model": "m", "messages": [{"role": "system", "content": "s"},
                                        {"role": "user", "content": "go"}], "tools": [BASH]}
    plan = plan_turn(validate_chat_request(first).conversation, model="m", nodes=())
    reply = ChatReply(encoder())
    run(reply, *ANSWER)
    node = next_node(plan, reply.turn(), "resp_1", chained=False)
    message = reply.result()["choices"][0]["message"]
    second = {**first, "messages": [*first["messages"], message,
                                    {"role": "tool", "tool_call_id": "call_9",
                                     "content": "file"}]}
    plan2 = plan_turn(validate_chat_request(second).conversation, model="m",
                      nodes=[node])
    assert plan2.node == node and plan2.delta is not None
    assert plan2.delta["previous_response_id"] == "resp_1"
    assert plan2.delta["input"] == [{"type": "function_call_output", "call_id": "call_9",
                                     "output": "file"}]
    # the streamed client holds the same message: content "" and no reasoning field
    streamed = {"role": "assistant", "content": "Hello", "tool_calls": message["tool_calls"]}
    plan3 = plan_turn(validate_chat_request(
        {**second, "messages": [*first["messages"], streamed, second["messages"][-1]]}
    ).conversation, model="m", nodes=[node])
    assert plan3.node == node
    assert isinstance(json.dumps(plan3.full), str) and isinstance(node, ChainNode)


def test_half_a_surrogate_pair_goes_out_as_its_escape():
    """An engine that cuts text by UTF-16 units sends each half of an emoji in its own
    chunk; raw, the half cannot be UTF-8 and the stream crashed mid-turn."""
    out = encode_sse([{"choices": [{"delta": {"content": "\ud83d"}}]}, "[DONE]"])
    assert b"\\ud83d" in out and out.endswith(b"data: [DONE]\n\n")
    assert json.loads(out.split(b"\n\n")[0][6:])["choices"][0]["delta"]["content"] == "\ud83d"
