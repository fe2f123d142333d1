"""The pivot conversation as an upstream Anthropic Messages body (``anthropic/upstream.py``)
and its planner: what an engine's own /v1/messages is sent."""

from __future__ import annotations

import itertools
import json

import pytest

from lmsd.protocol.anthropic.items import conversation
from lmsd.protocol.anthropic.request import validate_messages_request
from lmsd.protocol.anthropic.upstream import (
    DEFAULT_MAX_TOKENS,
    INVALID_ARGUMENTS,
    build_count_request,
    build_messages_request,
    image_block,
    text_conversation,
    tool_input,
)
from lmsd.protocol.pivot import (
    Conversation,
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    Image,
    Message,
    Text,
    ToolChoice,
)
from lmsd.protocol.plan import plan_messages_turn

PNG = "iVBORw0KGgo="
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": PNG}}
BASH = {"name": "Bash", "description": "Run a command",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}


def body_for(request: dict, **kw) -> dict:
    req = validate_messages_request({"model": "claude-x", "max_tokens": 100, **request})
    return build_messages_request(conversation(req), model="local", **kw)


def test_a_claude_code_turn_round_trips_into_messages():
    body = body_for({
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=1; cch=1;"},
                   {"type": "text", "text": "You are Claude Code."}],
        "tools": [BASH],
        "messages": [
            {"role": "user", "content": "list files"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Listing."},
                {"type": "tool_use", "id": "toolu_1", "name": "Bash",
                 "input": {"command": "ls"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"},
                {"type": "text", "text": "<system-reminder>be careful</system-reminder>"}]},
        ]}, user_id="sess-1")
    assert body == {
        "model": "local",
        "system": "You are Claude Code.",  # the billing header is stripped
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "list files"}]},
            {"role": "assistant", "content": [  # thinking is not sent back
                {"type": "text", "text": "Listing."},
                {"type": "tool_use", "id": "toolu_1", "name": "Bash",
                 "input": {"command": "ls"}}]},
            # tool results first and on their own: engines turn a user message's text
            # into a message before its results
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"}]},
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>be careful</system-reminder>"}]},
        ],
        "tools": [BASH],
        "max_tokens": 100,
        "metadata": {"user_id": "sess-1"},
        "stream": True,
    }


def test_user_text_next_to_user_text_is_folded_and_images_follow_results():
    conv = Conversation("", (
        (Message("user", (Text("one"),)),),
        (Message("user", (Text("<system-reminder>note</system-reminder>"),)),),
        (FunctionCall("c1", "Read", '{"path":"a.png"}'),),
        (FunctionCallOutput("c1", "[image 1: image/png, attached in the next message]",
                            (Image(f"data:image/png;base64,{PNG}"),)),
         Message("user", (Text("and this"), Image(f"data:image/jpeg;base64,{PNG}")))),
    ))
    messages = build_messages_request(conv, model="m")["messages"]
    assert messages == [
        {"role": "user", "content": [
            {"type": "text", "text": "one"},
            {"type": "text", "text": "<system-reminder>note</system-reminder>"}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "c1", "name": "Read", "input": {"path": "a.png"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "c1",
             "content": "[image 1: image/png, attached in the next message]"}]},
        {"role": "user", "content": [
            IMAGE, {"type": "text", "text": "and this"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                         "data": PNG}}]},
    ]


def test_empty_texts_and_empty_assistant_turns_are_not_sent():
    conv = Conversation("", ((Message("user", (Text("hi"),)),),
                             (Message("assistant", (Text(""),)),),
                             (Message("user", (Text("again"),)),)))
    assert build_messages_request(conv, model="m")["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi"},
                                     {"type": "text", "text": "again"}]}]


@pytest.mark.parametrize(("arguments", "expected"), [
    ('{"a": 1}', {"a": 1}),
    ("", {}),
    ("  ", {}),
    ("[1, 2]", {INVALID_ARGUMENTS: "[1, 2]"}),
    ("ls -la", {INVALID_ARGUMENTS: "ls -la"}),
])
def test_arguments_become_an_input_object(arguments, expected):
    assert tool_input(arguments) == expected


def test_an_image_that_is_not_a_data_url_is_sent_by_url():
    assert image_block(Image("https://example.com/a.png")) == {
        "type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}


@pytest.mark.parametrize(("choice", "expected"), [
    (ToolChoice("auto"), {"type": "auto"}),
    (ToolChoice("required"), {"type": "any"}),
    (ToolChoice("none"), {"type": "none"}),
    (ToolChoice("required", "Bash"), {"type": "tool", "name": "Bash"}),
    (ToolChoice("auto", parallel=False), {"type": "auto", "disable_parallel_tool_use": True}),
    (ToolChoice("none", parallel=False), {"type": "none"}),
])
def test_tool_choice(choice, expected):
    conv = Conversation("", ((Message("user", (Text("hi"),)),),),
                        tools=(FunctionTool("Bash", "", {"type": "object"}),),
                        tool_choice=choice)
    body = build_messages_request(conv, model="m")
    assert body["tool_choice"] == expected
    assert body["tools"] == [{"name": "Bash", "input_schema": {"type": "object"}}]


def test_a_named_tool_choice_sends_that_tool_alone():
    """llama-server's /v1/messages reads {"type": "tool"} as any tool: only the named one
    is offered, so that it is the one called."""
    conv = Conversation("", ((Message("user", (Text("hi"),)),),),
                        tools=(FunctionTool("Other", "", {"type": "object"}),
                               FunctionTool("Bash", "", {"type": "object"})),
                        tool_choice=ToolChoice("required", "Bash"))
    for body in (build_messages_request(conv, model="m"), build_count_request(conv, model="m")):
        assert body["tools"] == [{"name": "Bash", "input_schema": {"type": "object"}}]
        assert body["tool_choice"] == {"type": "tool", "name": "Bash"}


def test_no_tools_no_tool_choice_and_the_sampling_settings():
    conv = Conversation("sys", ((Message("user", (Text("hi"),)),),),
                        tool_choice=ToolChoice("auto"), temperature=0.2, top_p=0.9, top_k=5)
    body = build_messages_request(conv, model="m")
    assert body == {"model": "m", "system": "sys", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "max_tokens": DEFAULT_MAX_TOKENS, "temperature": 0.2, "top_p": 0.9, "top_k": 5,
        "stream": True}
    assert "stop_sequences" not in body_for({"messages": [{"role": "user", "content": "x"}],
                                             "stop_sequences": ["END"]})


def test_the_count_request_is_the_prompt_alone():
    conv = Conversation("sys", ((Message("user", (Text("hi"),)),),),
                        tools=(FunctionTool("Bash", "d", {"type": "object"}),),
                        tool_choice=ToolChoice("required"), max_output_tokens=9,
                        temperature=0.5)
    assert build_count_request(conv, model="m") == {
        "model": "m", "system": "sys",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "tools": [{"name": "Bash", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any"}}
    assert build_count_request(text_conversation("some text"), model="m") == {
        "model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "some text"}]}]}


def test_the_plan_is_stateless_and_prefix_stable_turn_after_turn():
    history: list[dict] = [{"role": "user", "content": "start"}]
    bodies = []
    for n in range(4):
        req = validate_messages_request({"model": "c", "max_tokens": 10, "tools": [BASH],
                                         "messages": history})
        plan = plan_messages_turn(conversation(req), model="m", session="s1")
        assert plan.delta is None and plan.stateless and plan.miss is None
        assert plan.bodies == [plan.full] and plan.full["metadata"] == {"user_id": "s1"}
        bodies.append(plan.full)
        history += [{"role": "assistant", "content": [
                        {"type": "tool_use", "id": f"t{n}", "name": "Bash",
                         "input": {"command": f"echo {n}"}}]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": f"t{n}", "content": f"{n}"}]}]
    for before, after in itertools.pairwise(bodies):
        dumped = json.dumps(before["messages"])[:-1]
        assert json.dumps(after["messages"]).startswith(dumped)
    assert plan.traffic(False)[0] == len(bodies[-1]["messages"])
    assert "metadata" not in plan_messages_turn(conversation(req), model="m").full
