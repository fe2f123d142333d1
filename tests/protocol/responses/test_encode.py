"""Pivot events -> Responses SSE events (``protocol/responses/encode.py``)."""

from __future__ import annotations

from lmsd.protocol.failures import ContextOverflow, Overloaded, UpstreamBroken
from lmsd.protocol.pivot import (
    Failed,
    Finished,
    ReasoningDone,
    Started,
    TextDelta,
    TextDone,
    ToolArgumentsDelta,
    ToolCallDone,
    ToolCallStarted,
    Usage,
)
from lmsd.protocol.responses.encode import ResponsesEncoder
from lmsd.protocol.responses.tools import convert_tools

NS = {"type": "namespace", "name": "multi_agent_v1",
      "tools": [{"type": "function", "name": "close_agent"}]}
PATCH = {"type": "custom", "name": "apply_patch"}
EXEC = {"type": "function", "name": "exec_command"}


def encoder(estimate=100):
    _, tools, _ = convert_tools([EXEC, NS, PATCH])
    return ResponsesEncoder(response_id="resp_x", model="gpt-5.5", estimate=estimate,
                            tools=tools, created_at=1)


def run(enc, events):
    out = enc.start()
    for e in events:
        out += enc.feed(e)
    return out + enc.finish()


ANSWER = [
    Started("resp_up"),
    ReasoningDone("rs_1/0", "think"),
    TextDelta("msg_1/0", "Hel"), TextDelta("msg_1/0", "lo"), TextDone("msg_1/0", "Hello"),
    ToolCallStarted("fc_1", "call_1", "multi_agent_v1__close_agent"),
    ToolArgumentsDelta("fc_1", '{"id":'), ToolCallDone("fc_1", '{"id":"a"}'),
    ToolCallStarted("fc_2", "call_2", "apply_patch"),
    ToolArgumentsDelta("fc_2", '{"input":"*** Begin'), ToolCallDone("fc_2",
                                                                    '{"input":"*** Begin"}'),
    Finished("end", Usage(input_tokens=5, cached_tokens=0, output_tokens=7), "resp_up"),
]


def test_full_grammar_with_sequence_numbers():
    enc = encoder()
    out = run(enc, ANSWER)
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    types = [e["type"] for e in out]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert "error" not in types
    done = [e["item"] for e in out if e["type"] == "response.output_item.done"]
    assert [i["type"] for i in done] == ["reasoning", "message", "function_call",
                                         "custom_tool_call"]
    assert done[0] == {"id": "rs_1", "type": "reasoning", "summary": [],
                       "content": [{"type": "reasoning_text", "text": "think"}]}
    assert done[1]["content"][0]["text"] == "Hello"
    assert done[2]["name"] == "close_agent" and done[2]["namespace"] == "multi_agent_v1"
    assert done[2]["arguments"] == '{"id":"a"}' and done[2]["call_id"] == "call_1"
    assert done[3]["input"] == "*** Begin" and done[3]["call_id"] == "call_2"
    deltas = "".join(e["delta"] for e in out if e["type"] == "response.output_text.delta")
    assert deltas == "Hello"
    # the custom tool's input goes out whole; only real function calls stream arguments
    assert {e["item_id"] for e in out
            if e["type"] == "response.function_call_arguments.delta"} == {"fc_1"}
    final = out[-1]["response"]
    assert final["id"] == "resp_x" and final["output"] == done
    assert enc.upstream_response_id == "resp_up"


def test_usage_is_the_whole_context():
    enc = encoder(estimate=1000)
    out = run(enc, [Started(), TextDone("m/0", "x"),
                    Finished("end", Usage(input_tokens=20, cached_tokens=900,
                                          output_tokens=3))])
    usage = out[-1]["response"]["usage"]
    assert usage["input_tokens"] == 920
    assert usage["input_tokens_details"]["cached_tokens"] == 900
    assert usage["total_tokens"] == 923
    # uncovered by the upstream (lms#553): the estimate stands in
    enc = encoder(estimate=1000)
    out = run(enc, [TextDone("m/0", "x"), Finished("end", Usage(input_tokens=10,
                                                                output_tokens=3))])
    assert out[-1]["response"]["usage"]["input_tokens"] == 1000


def test_length_is_incomplete_and_open_calls_never_complete():
    enc = encoder()
    out = run(enc, [TextDelta("m/0", "a"), ToolCallStarted("fc", "c", "exec_command"),
                    Finished("length")])
    assert out[-1]["type"] == "response.incomplete"
    assert out[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    done = [e["item"]["type"] for e in out if e["type"] == "response.output_item.done"]
    assert done == ["message"]


def test_failures_are_response_failed_with_codes():
    cases = [(ContextOverflow("too long", prompt_tokens=10, context_limit=5),
              "context_length_exceeded"),
             (UpstreamBroken("boom"), "server_error"),
             (Overloaded("busy"), "rate_limit_exceeded")]
    for failure, code in cases:
        enc = encoder()
        out = run(enc, [TextDelta("m/0", "a"), Failed(failure)])
        assert out[-1]["type"] == "response.failed"
        assert out[-1]["response"]["error"]["code"] == code
        assert enc.failure is failure
        assert not any(e["type"] == "response.output_item.done" for e in out)


def test_a_stream_cut_short_fails():
    enc = encoder()
    out = run(enc, [TextDelta("m/0", "a")])
    assert out[-1]["type"] == "response.failed"
    assert out[-1]["response"]["error"]["code"] == "server_error"


def test_items_without_upstream_ids_get_unique_ones():
    enc = encoder()
    out = run(enc, [TextDone("#0/0", "a"), TextDone("#1/0", "b"), Finished("end")])
    ids = [e["item"]["id"] for e in out if e["type"] == "response.output_item.done"]
    assert len(set(ids)) == 2 and all(i.startswith("msg_") for i in ids)
