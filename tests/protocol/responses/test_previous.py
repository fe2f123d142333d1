"""A follow-up by ``previous_response_id`` made the whole conversation (no I/O here)."""

from __future__ import annotations

import pytest

from lmsd.protocol.failures import BadRequest
from lmsd.protocol.pivot import FunctionCall, FunctionCallOutput, Message
from lmsd.protocol.responses.front import parse_request
from lmsd.protocol.responses.previous import expanded, input_items, previous_id, stores

EARLIER = [{"type": "message", "role": "user", "content": "list"},
           {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "c1",
            "name": "exec", "arguments": "{}"}]


def test_the_history_goes_before_the_new_items_and_the_id_is_dropped():
    body = {"model": "m", "previous_response_id": "resp_1", "instructions": "new",
            "input": [{"type": "function_call_output", "call_id": "c1", "output": "a b"}]}
    whole = expanded(body, EARLIER)
    assert "previous_response_id" not in whole and whole["instructions"] == "new"
    assert whole["input"] == [*EARLIER, *body["input"]]
    conv = parse_request(whole).conversation
    assert conv.instructions == "new"
    assert [type(t[0]) for t in conv.turns] == [Message, FunctionCall, FunctionCallOutput]


def test_a_string_input_is_one_user_message():
    assert input_items({"input": "hi"}) == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
    assert expanded({"input": "hi"}, EARLIER)["input"][-1]["role"] == "user"


@pytest.mark.parametrize(("body", "kept"), [({}, True), ({"store": True}, True),
                                            ({"store": None}, True), ({"store": False}, False)])
def test_store_defaults_to_true(body, kept):
    assert stores(body) is kept


@pytest.mark.parametrize("body", [{"store": "no"}, {"store": 0}])
def test_a_bad_store_is_named(body):
    with pytest.raises(BadRequest, match=r"^store: "):
        stores(body)


@pytest.mark.parametrize("value", [7, "", ["resp_1"]])
def test_a_bad_previous_response_id_is_named(value):
    with pytest.raises(BadRequest, match=r"^previous_response_id: "):
        previous_id({"previous_response_id": value})
    assert previous_id({"previous_response_id": None}) is None
