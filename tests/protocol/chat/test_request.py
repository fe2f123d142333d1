"""Pivot conversation -> chat completions body, fed pivot values directly."""

from lmsd.protocol.chat.request import build_chat_request, turn_messages
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

PNG = Image("data:image/png;base64,AAAA")
TOOL = FunctionTool("Read", "read a file", {"type": "object"})


def test_an_assistant_turn_is_one_message_with_its_calls():
    turn = (Message("assistant", (Text("a"),)), FunctionCall("c1", "Read", "{}"),
            Message("assistant", (Text("b"),)))
    assert turn_messages(turn) == [{"role": "assistant", "content": "a\n\nb", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "Read", "arguments": "{}"}}]}]


def test_a_user_turn_is_results_then_tool_images_then_the_users_own_parts():
    turn = (FunctionCallOutput("c1", "out", (PNG,)), Message("user", (Text("look"),)),
            Message("user", (PNG,)))
    assert turn_messages(turn) == [
        {"role": "tool", "tool_call_id": "c1", "content": "out"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG.url}}]},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": PNG.url}}]},
    ]


def test_empty_turns_send_nothing():
    assert turn_messages(()) == []


def test_body_carries_instructions_tools_choice_and_sampling():
    conv = Conversation("be brief", ((Message("user", (Text("hi"),)),),
                                     (Message("user", (Text("again"),)),)),
                        tools=(TOOL,), tool_choice=ToolChoice("required", "Read", False),
                        max_output_tokens=50, temperature=0.2, top_k=20)
    body = build_chat_request(conv, model="m")
    assert body["messages"] == [{"role": "system", "content": "be brief"},
                                {"role": "user", "content": "hi\n\nagain"}]
    assert body["tools"] == [{"type": "function", "function": {
        "name": "Read", "description": "read a file", "parameters": {"type": "object"}}}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "Read"}}
    assert body["parallel_tool_calls"] is False
    assert (body["max_tokens"], body["temperature"], body["top_k"]) == (50, 0.2, 20)
    assert "top_p" not in body and body["stream_options"] == {"include_usage": True}


def test_a_named_choice_for_llama_server_is_required_with_only_that_tool():
    """llama-server reads ``tool_choice`` only as a string (the object means ``auto``)."""
    other = FunctionTool("Write", "write a file", {"type": "object"})
    conv = Conversation("", ((Message("user", (Text("hi"),)),),), tools=(other, TOOL),
                        tool_choice=ToolChoice("required", "Read"))
    body = build_chat_request(conv, model="m", named_as_required=True)
    assert body["tool_choice"] == "required"
    assert [t["function"]["name"] for t in body["tools"]] == ["Read"]
    assert build_chat_request(conv, model="m")["tool_choice"] == {
        "type": "function", "function": {"name": "Read"}}
    plain = Conversation("", conv.turns, tools=(other, TOOL),
                         tool_choice=ToolChoice("required"))
    assert build_chat_request(plain, model="m", named_as_required=True)["tools"] == \
        build_chat_request(plain, model="m")["tools"]  # only a named choice narrows
