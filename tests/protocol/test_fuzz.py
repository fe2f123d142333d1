"""Fuzzing: whatever a client or an upstream sends, lmsd answers cleanly.

- the request validator and translator, on arbitrary JSON and on mutations of a real
  Claude Code request: a BadRequest (400) or a valid upstream request, nothing else;
- the Responses decoder and the Anthropic encoder fed arbitrary bytes and arbitrary event
  objects: always a valid Anthropic event sequence.

The HTTP front is fuzzed in tests/fronts/test_fuzz.py.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmsd.protocol.anthropic.errors import render
from lmsd.protocol.anthropic.request import parse_json, validate_messages_request
from lmsd.protocol.failures import BadRequest
from lmsd.protocol.sse import SSEDecoder
from tests.support import pivot
from tests.support.anthropic_checks import check_stream
from tests.support.fuzz import BASE, PATHS, json_values, mutate
from tests.support.pipelines import ResponsesPipeline


def translate_or_reject(raw: Any) -> None:
    try:
        req = validate_messages_request(raw)
    except BadRequest as exc:
        error = render(exc)
        assert error.status == 400 and error.type == "invalid_request_error" and error.message
        return
    plan = pivot.plan(req, model="m", nodes=[])
    json.dumps(plan.full)  # serializable
    for item in plan.full["input"]:
        assert item["type"] in ("message", "function_call", "function_call_output")
        if item["type"] == "function_call_output":
            assert isinstance(item["output"], str)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_is_rejected_or_translated(raw):
    translate_or_reject(raw)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), json_values)
def test_any_field_of_a_real_request_replaced_by_anything(path, value):
    translate_or_reject(mutate(BASE, path, value))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_as_a_body(data):
    try:
        translate_or_reject(parse_json(data))
    except BadRequest as exc:
        assert render(exc).status == 400


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=20))
def test_the_converter_survives_arbitrary_upstream_bytes(chunks):
    conv = ResponsesPipeline(message_id="msg_f", model="m", input_tokens=1)
    decoder = SSEDecoder()
    out = conv.start()
    for chunk in chunks:
        for sse in decoder.feed(chunk):
            try:
                event = json.loads(sse.data)
            except ValueError:
                continue
            if isinstance(event, dict):
                out += conv.feed(event)
    out += conv.finish()
    assert check_stream(out) in ("complete", "error")


event_types = st.sampled_from([
    "response.created", "response.output_item.added", "response.output_item.done",
    "response.output_text.delta", "response.output_text.done",
    "response.function_call_arguments.delta", "response.function_call_arguments.done",
    "response.reasoning_text.delta", "response.reasoning_text.done",
    "response.reasoning_summary_text.delta", "response.completed", "response.incomplete",
    "response.failed", "error", "response.refusal.delta", "something.else"])
junk_event = st.fixed_dictionaries({"type": event_types}, optional={
    "item_id": st.sampled_from(["a", "b", "", None, 3]),
    "output_index": st.sampled_from([0, 1, 2, -1, None, "x"]),
    "content_index": st.sampled_from([0, 1, None]),
    "delta": st.one_of(st.text(max_size=10), st.none(), st.integers()),
    "text": st.one_of(st.text(max_size=10), st.none()),
    "arguments": st.one_of(st.text(max_size=10), st.none()),
    "item": st.fixed_dictionaries({}, optional={
        "id": st.sampled_from(["a", "b", None]), "type": st.sampled_from(
            ["message", "function_call", "reasoning", "other", None]),
        "call_id": st.sampled_from(["c1", None, ""]), "name": st.text(max_size=5),
        "arguments": st.text(max_size=10),
        "content": st.lists(st.fixed_dictionaries({"type": st.sampled_from(
            ["output_text", "reasoning_text", "refusal"]), "text": st.text(max_size=5)}),
            max_size=2)}),
    "response": st.fixed_dictionaries({}, optional={
        "id": st.text(max_size=5), "usage": st.one_of(st.none(), st.fixed_dictionaries(
            {"input_tokens": st.integers(0, 10**6), "output_tokens": st.integers(0, 10**5)})),
        "error": st.fixed_dictionaries({"message": st.text(max_size=20)})}),
    "message": st.text(max_size=20), "code": st.sampled_from(["server_error", None]),
})


@settings(max_examples=500, deadline=None)
@given(st.lists(junk_event, max_size=25))
def test_the_converter_survives_arbitrary_event_objects(events):
    conv = ResponsesPipeline(message_id="msg_j", model="m", input_tokens=1,
                             stop_sequences=["STOP"])
    out = conv.start()
    for event in events:
        out += conv.feed(event)
    out += conv.finish()
    assert check_stream(out) in ("complete", "error")
