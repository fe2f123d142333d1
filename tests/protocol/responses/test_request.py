"""Pivot conversation -> LM Studio /v1/responses body, fed pivot values directly."""

from lmsd.protocol.pivot import Conversation, FunctionTool, Message, Text, ToolChoice, turn_json
from lmsd.protocol.responses.request import build_responses_request, join_items

READ = FunctionTool("Read", "", {"type": "object"})
BASH = FunctionTool("Bash", "run", {"type": "object"})


def _conv(**extra):
    turns = ((Message("user", (Text("hi"),)),), (Message("user", (Text("<note>"),)),))
    return Conversation("sys", turns, tools=(READ, BASH), **extra)


def test_adjacent_user_text_folds_and_the_body_is_ordered():
    conv = _conv(max_output_tokens=9)
    body = build_responses_request(conv, model="m",
                                   items=join_items(turn_json(t) for t in conv.turns))
    assert list(body) == ["model", "input", "instructions", "tools", "max_output_tokens",
                          "stream", "store"]
    assert body["input"] == [{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "hi"}, {"type": "input_text", "text": "<note>"}]}]
    assert body["tools"] == [{"type": "function", "name": "Read", "parameters": {
        "type": "object"}}, {"type": "function", "name": "Bash", "description": "run",
                             "parameters": {"type": "object"}}]


def test_forcing_one_tool_sends_only_it_as_required():
    body = build_responses_request(_conv(tool_choice=ToolChoice("required", "Bash", False)),
                                   model="m", items=[], previous_response_id="resp_1")
    assert body["previous_response_id"] == "resp_1"
    assert [t["name"] for t in body["tools"]] == ["Bash"]
    assert (body["tool_choice"], body["parallel_tool_calls"]) == ("required", False)
