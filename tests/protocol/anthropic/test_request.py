import base64

import pytest

from lmsd.protocol.anthropic.errors import render
from lmsd.protocol.anthropic.request import parse_json, validate_messages_request
from lmsd.protocol.failures import BadRequest
from tests.support.fixtures import requests

PNG = base64.b64encode(b"\x89PNG....").decode()
USER = {"role": "user", "content": "hi"}


def ok(**extra):
    return {"model": "claude-sonnet-4-6", "max_tokens": 10, "messages": [USER], **extra}


def image(media_type="image/png", data=PNG, kind="base64"):
    return {"type": "image", "source": {"type": kind, "media_type": media_type, "data": data}}


def test_every_captured_claude_code_request_is_accepted():
    names = ["basic_json", "thinking_json", "tools_parallel", "inter_compact", "interactive",
             "bare", "inter_nodisable", "model_flag", "sse_error_once", "stream_json"]
    seen = 0
    for name in names:
        for r in requests(name):
            validate_messages_request(r["body"])
            seen += 1
        for r in requests(name, "/v1/messages/count_tokens"):
            validate_messages_request(r["body"], count_only=True)
            seen += 1
    assert seen > 50


BAD = [
    ([], "request body: expected a JSON object"),
    ({"max_tokens": 10, "messages": [USER]}, "request.model: field required"),
    (ok(model=""), "model: must not be empty"),
    (ok(model=5), "request.model: expected a string"),
    ({"model": "m", "messages": [USER]}, "max_tokens: field required"),
    (ok(max_tokens="10"), "max_tokens: expected an integer"),
    (ok(max_tokens=True), "max_tokens: expected an integer"),
    (ok(max_tokens=0), "max_tokens: must be at least 1"),
    (ok(messages=[]), "messages: at least one message"),
    (ok(messages={"role": "user"}), "messages: expected an array"),
    (ok(messages=[{"role": "bot", "content": "x"}]), "messages.0.role: must be one of"),
    (ok(messages=[{"role": "user"}]), "messages.0.content: field required"),
    (ok(messages=[{"role": "assistant", "content": "x"}]), "first non-system message"),
    (ok(messages=[{"role": "user", "content": 5}]), "messages.0.content: expected a string"),
    (ok(messages=[{"role": "user", "content": [{"text": "x"}]}]), "content.0.type: field"),
    (ok(messages=[{"role": "user", "content": [{"type": "video"}]}]),
     "messages.0.content.0.type: content block type 'video' is not supported"),
    (ok(messages=[{"role": "user", "content": [{"type": "text"}]}]), "content.0.text: field"),
    (ok(messages=[{"role": "user", "content": [image("image/webp")]}]),
     "media_type: LM Studio's API does not accept WebP"),
    (ok(messages=[{"role": "user", "content": [image("image/bmp")]}]), "is not one of"),
    (ok(messages=[{"role": "user", "content": [image(data="not base64!!")]}]),
     "source.data: not valid base64"),
    (ok(messages=[{"role": "user", "content": [image(kind="url")]}]), "only base64"),
    (ok(messages=[{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                        "data": PNG}}]}]), "cannot be sent to LM Studio"),
    (ok(messages=[USER, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]}]),
     "tool_use 't1' has no tool_result"),
    (ok(messages=[{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "nope", "content": "x"}]}]),
     "'nope' does not answer a tool_use"),
    (ok(messages=[USER, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "Bash", "input": "ls"}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]}]),
     "content.0.input: expected an object"),
    (ok(system=5), "system: expected a string or an array"),
    (ok(system=[{"type": "image"}]), "system.0.type: system blocks must be 'text'"),
    (ok(tools={}), "tools: expected an array"),
    (ok(tools=[{"name": "x"}]), "tools.0.input_schema: field required"),
    (ok(tools=[{"name": "x", "input_schema": {}}, {"name": "x", "input_schema": {}}]),
     "duplicate tool name"),
    (ok(temperature=3), "temperature: must be between"),
    (ok(top_p="high"), "top_p: expected a number"),
    (ok(stream="yes"), "stream: expected a boolean"),
    (ok(stop_sequences="STOP"), "stop_sequences: expected an array"),
    (ok(stop_sequences=[""]), "stop_sequences.0: must not be empty"),
    (ok(tool_choice={"type": "tool", "name": "ghost"}), "no tool named 'ghost'"),
    (ok(tool_choice={"type": "sometimes"}), "tool_choice.type"),
    (ok(metadata="x"), "metadata: expected an object"),
]


@pytest.mark.parametrize(("raw", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_requests_get_a_400_naming_the_problem(raw, message):
    with pytest.raises(BadRequest) as info:
        validate_messages_request(raw)
    error = render(info.value)
    assert error.status == 400
    assert error.type == "invalid_request_error"
    assert message in error.message


def test_server_tools_are_set_aside_not_sent():
    req = validate_messages_request(ok(tools=[
        {"type": "web_search_20250305", "name": "web_search"},
        {"name": "Bash", "input_schema": {"type": "object"}}]))
    assert req.server_tools == ["web_search"]
    assert [t["name"] for t in req.tools] == ["Bash"]


def test_bad_json_and_deep_nesting():
    with pytest.raises(BadRequest, match="not valid JSON"):
        parse_json(b"{nope")
    with pytest.raises(BadRequest, match=r"nested too deeply|not valid JSON"):
        parse_json(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(BadRequest, match="not valid JSON"):
        parse_json(b"\xff\xfe")
