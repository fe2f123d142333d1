"""The chat client face alone: a /v1/chat/completions body in, a pivot Conversation out."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmsd.protocol.chat.front import validate_chat_request
from lmsd.protocol.chat.items import message_turn
from lmsd.protocol.failures import BadRequest
from lmsd.protocol.pivot import (
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    Image,
    Message,
    Text,
    ToolChoice,
)

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 8).decode()
BASH = {"type": "function", "function": {"name": "Bash", "description": "Run",
                                         "parameters": {"type": "object"}}}
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "Bash", "arguments": '{"command":"ls"}'}}


def req(messages, **fields):
    return validate_chat_request({"model": "m", "messages": messages, **fields})


def test_the_mapping_of_every_role():
    r = req([
        {"role": "system", "content": "sys"},
        {"role": "developer", "content": [{"type": "text", "text": "dev"}]},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": PNG}},
                                     {"type": "text", "text": "at it"}]},
        {"role": "assistant", "content": "running", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "a\nb"},
        {"role": "system", "content": "later"},
        {"role": "user", "content": "next"},
    ], tools=[BASH], tool_choice="auto", parallel_tool_calls=False,
        max_completion_tokens=77, temperature=0.5, top_p=0.9, top_k=20)
    conv = r.conversation
    assert conv.instructions == "sys\n\ndev"
    assert conv.turns == (
        (Message("user", (Text("look"),)), Message("user", (Image(PNG),)),
         Message("user", (Text("at it"),))),
        (Message("assistant", (Text("running"),)),
         FunctionCall("call_1", "Bash", '{"command":"ls"}')),
        (FunctionCallOutput("call_1", "a\nb"),),
        (Message("user", (Text("<system-reminder>\nlater\n</system-reminder>"),)),),
        (Message("user", (Text("next"),)),),
    )
    assert conv.tools == (FunctionTool("Bash", "Run", {"type": "object"}),)
    assert conv.tool_choice == ToolChoice("auto", None, False)
    assert (conv.max_output_tokens, conv.temperature, conv.top_p, conv.top_k) == (
        77, 0.5, 0.9, 20)
    assert r.messages == 7 and not r.stream


def test_a_named_tool_choice_and_the_legacy_max_tokens():
    conv = req([{"role": "user", "content": "x"}], tools=[BASH], max_tokens=9,
               tool_choice={"type": "function", "function": {"name": "Bash"}}).conversation
    assert conv.tool_choice == ToolChoice("required", "Bash", True)
    assert conv.max_output_tokens == 9


def test_stream_usage_stop_and_session_hints():
    r = req([{"role": "user", "content": "x"}], stream=True,
            stream_options={"include_usage": True}, stop="END", prompt_cache_key="k",
            user="u", seed=3, response_format={"type": "text"}, n=1, logprobs=False)
    assert (r.stream, r.include_usage, r.stop, r.session_hints) == (True, True, ("END",),
                                                                    ["k", "u"])


def test_each_message_is_the_same_turn_wherever_it_stands():
    """Prefix-stable: a message's turn depends on the message alone."""
    messages = [{"role": "user", "content": "a"},
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "out"},
                {"role": "assistant", "content": "done"}, {"role": "user", "content": "b"}]
    short = req(messages[:3]).conversation.turns
    long = req(messages).conversation.turns
    assert long[:3] == short
    assert long == tuple(message_turn(m) for m in messages)


@pytest.mark.parametrize(("fields", "fragment"), [
    ({"n": 2}, "n: only one choice"),
    ({"logprobs": True}, "logprobs: log probabilities are not supported"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"audio": {"voice": "x"}}, "audio output is not supported"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"response_format": {"type": "json_object"}}, "no output format"),
    ({"response_format": {"type": "json_schema", "json_schema": {}}}, "'json_schema'"),
    ({"functions": []}, "legacy 'functions'"),
    ({"tool_choice": "required"}, "needs at least one tool"),
    ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools.0.type"),
    ({"tools": [BASH, BASH]}, "duplicate tool name"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "at most 4"),
    ({"temperature": 3}, "temperature: must be between"),
    ({"max_completion_tokens": 0}, "max_completion_tokens: must be at least 1"),
    ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
])
def test_what_lmsd_cannot_honour_is_a_400_naming_the_field(fields, fragment):
    with pytest.raises(BadRequest) as caught:
        req([{"role": "user", "content": "x"}], **fields)
    assert fragment in caught.value.message


@pytest.mark.parametrize(("messages", "fragment"), [
    ([{"role": "user", "content": [{"type": "image_url",
                                     "image_url": {"url": "https://x/y.png"}}]}],
     "messages.0.content.0.image_url.url: only base64 data URLs"),
    ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
     "messages.0.content.0.type: content part type 'input_audio'"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "data:image/webp;base64,AAAA"}}]}], "'image/webp' is not one of"),
    ([{"role": "tool", "tool_call_id": "nope", "content": "x"}],
     "messages.0.tool_call_id: 'nope' does not answer"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [CALL]},
      {"role": "user", "content": "y"}], "messages.1.tool_calls: tool call 'call_1' has no"),
    ([{"role": "function", "content": "x"}], "messages.0.role: must be one of"),
])
def test_bad_messages_name_the_field(messages, fragment):
    with pytest.raises(BadRequest) as caught:
        req(messages)
    assert fragment in caught.value.message


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-3, 3) | st.sampled_from(
        ["", "x", "user", "assistant", "tool", "system", "text", "image_url", "function",
         "call_1", "auto", "required", "none", "data:image/png;base64,AAAA"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["role", "content", "type", "text", "tool_calls", "tool_call_id", "id", "function",
         "name", "arguments", "image_url", "url", "parameters"]), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(messages=_JSON, tools=_JSON, choice=_JSON, extra=st.dictionaries(st.sampled_from(
    ["stream", "stop", "n", "max_tokens", "temperature", "response_format", "user"]), _JSON))
def test_any_body_is_a_conversation_or_a_bad_request(messages, tools, choice, extra):
    body = {"model": "m", "messages": messages, "tools": tools, "tool_choice": choice, **extra}
    with contextlib.suppress(BadRequest):  # anything else (a crash) fails the test
        validate_chat_request(body)
