"""Responses request -> pivot (``protocol/responses/front.py``, ``tools.py``)."""

from __future__ import annotations

import json

import pytest

from lmsd.protocol.failures import BadRequest
from lmsd.protocol.pivot import FunctionCall, FunctionCallOutput, Image, Message, Text
from lmsd.protocol.responses.front import SYSTEM_CLOSE, SYSTEM_OPEN, parse_request
from lmsd.protocol.responses.tools import ToolRef, convert_tools, flat_name
from tests.support.fixtures import codex_request


def body(items, tools=None, **extra):
    return {"model": "m", "input": items, **({"tools": tools} if tools else {}), **extra}


def msg(role, text, **extra):
    return {"type": "message", "role": role,
            "content": [{"type": "input_text" if role != "assistant" else "output_text",
                         "text": text}], **extra}


def test_plain_string_input_and_the_oss_probe():
    req = parse_request({"model": "m", "input": "", "max_output_tokens": 1})
    assert req.conversation.turns == ((Message("user", (Text(""),)),),)
    assert req.stream is False and req.conversation.max_output_tokens == 1


def test_leading_developer_messages_are_instructions_later_ones_reminders():
    req = parse_request(body([msg("developer", "base"), msg("system", "skills"),
                              msg("user", "hi"), msg("developer", "note")],
                             instructions="top"))
    conv = req.conversation
    assert conv.instructions == "top\n\nbase\n\nskills"
    assert conv.turns == ((Message("user", (Text("hi"),)),),
                          (Message("user", (Text(SYSTEM_OPEN + "note" + SYSTEM_CLOSE),)),))


def test_ids_status_reasoning_dropped_and_answers_grouped():
    items = [msg("user", "go", id="msg_1"),
             {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": None,
              "content": [{"type": "reasoning_text", "text": "hmm"}]},
             msg("assistant", "ok", id="msg_2", status="completed"),
             {"type": "function_call", "id": "fc_1", "status": "completed", "call_id": "c1",
              "name": "close_agent", "namespace": "multi_agent_v1", "arguments": "{}"},
             {"type": "custom_tool_call", "id": "ctc", "status": "completed",
              "call_id": "c2", "name": "apply_patch", "input": "*** Begin Patch"},
             {"type": "function_call_output", "id": "fco_1", "call_id": "c1",
              "output": [{"type": "input_text", "text": "a"},
                         {"type": "input_image", "image_url": "data:image/png;base64,AA"},
                         {"type": "input_text", "text": "b"}]},
             {"type": "custom_tool_call_output", "id": "ctco", "call_id": "c2",
              "output": "Success"}]
    turns = parse_request(body(items)).conversation.turns
    assert turns == (
        (Message("user", (Text("go"),)),),
        (Message("assistant", (Text("ok"),)),
         FunctionCall("c1", "multi_agent_v1__close_agent", "{}"),
         FunctionCall("c2", "apply_patch", '{"input":"*** Begin Patch"}')),
        (FunctionCallOutput("c1", "a\nb", (Image("data:image/png;base64,AA"),)),),
        (FunctionCallOutput("c2", "Success"),),
    )


def test_codex_tools_flattened_and_dropped():
    captured = codex_request("resp-resume", 4)["body"]
    req = parse_request(captured)
    names = [t.name for t in req.conversation.tools]
    assert "multi_agent_v1__close_agent" in names and "exec_command" in names
    assert req.notes["tools_dropped"] == ["web_search"]
    assert req.tools.client_ref("multi_agent_v1__spawn_agent") == \
        ToolRef("function", "spawn_agent", "multi_agent_v1")
    assert req.prompt_cache_key == captured["prompt_cache_key"]
    assert req.conversation.instructions.startswith("You are a coding agent")


def test_catalog_request_custom_tool_and_text_verbosity():
    req = parse_request(codex_request("resp-known-model", 1)["body"])
    [patch] = [t for t in req.conversation.tools if t.name == "apply_patch"]
    assert patch.parameters["required"] == ["input"]
    assert "lark grammar" in patch.description
    assert req.tools.client_ref("apply_patch") == ToolRef("custom", "apply_patch")
    assert sorted(req.notes["tools_dropped"]) == ["tool_search", "web_search"]
    assert "text_format_dropped" not in req.notes  # text.verbosity only


def test_flat_names_are_safe_and_unique():
    long_ns = {"type": "namespace", "name": "n" * 40, "tools": [
        {"type": "function", "name": "x" * 40}, {"type": "function", "name": "x" * 41}]}
    tools, mapping, _ = convert_tools([long_ns])
    names = [t.name for t in tools]
    assert len(set(names)) == 2 and all(len(n) <= 64 for n in names)
    assert mapping.client_ref(names[1]).name == "x" * 41
    assert flat_name("a.b", "c") == "a_b__c"


def test_request_kind_from_turn_metadata():
    meta = json.dumps({"request_kind": "compaction"})
    assert parse_request(body("x"), turn_metadata=meta).request_kind == "compaction"
    assert parse_request(body("x"), turn_metadata="{bad").request_kind == "turn"


@pytest.mark.parametrize(("bad", "field"), [
    ([], "body"),
    ({"input": "x"}, "model"),
    ({"model": "m"}, "input"),
    (body("x", stream="yes"), "stream"),
    (body(3), "input"),
    (body([3]), "input[0]"),
    (body([{"type": "message", "role": "tool", "content": "x"}]), "input[0].role"),
    (body([{"type": "function_call", "name": "f", "arguments": "{}"}]), "input[0].call_id"),
    (body([{"type": "item_reference", "id": "x"}]), "input[0].type"),
    (body([{"type": "message", "role": "user", "content": [{"type": "input_file"}]}]),
     "input[0].content[0].type"),
    (body("x", tools=[{"type": "function", "name": "bad name"}]), "tools[0].name"),
    (body("x", tools=[{"type": "mystery"}]), "tools[0].type"),
    (body("x", tools=[{"type": "function", "name": "f"}], tool_choice="sometimes"),
     "tool_choice"),
    (body("x", temperature=9), "temperature"),
    (body("x", max_output_tokens=0), "max_output_tokens"),
])
def test_bad_input_names_the_field(bad, field):
    with pytest.raises(BadRequest) as caught:
        parse_request(bad)
    assert caught.value.message.startswith(field), caught.value.message
