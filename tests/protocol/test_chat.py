"""The Chat Completions dialect: request translation (its stream: tests/protocol/chat)."""

from __future__ import annotations

import itertools
import json

from lmsd.protocol.anthropic.request import validate_messages_request
from tests.support.fixtures import body, requests
from tests.support.pivot import chat_body


def chat(raw, model="m"):
    return chat_body(validate_messages_request(raw), model=model)


def test_tool_loop_turn_two():
    raw = body("basic_json", 1)
    out = chat(raw)
    system, user, assistant, tool = out["messages"]
    assert system == {"role": "system", "content": raw["system"][1]["text"] + "\n\n"
                      + raw["system"][2]["text"]}
    blocks = raw["messages"][0]["content"]
    assert user["role"] == "user"
    assert user["content"] == (blocks[0]["text"] + "\n\n" + blocks[1]["text"] + "\n\n"
                               + "<system-reminder>\n" + raw["messages"][1]["content"]
                               + "\n</system-reminder>")
    text, use = raw["messages"][2]["content"]
    assert assistant == {"role": "assistant", "content": text["text"], "tool_calls": [
        {"id": use["id"], "type": "function", "function": {
            "name": "Bash", "arguments": json.dumps(use["input"], separators=(",", ":"))}}]}
    result = raw["messages"][3]["content"][0]
    assert tool == {"role": "tool", "tool_call_id": use["id"], "content": result["content"]}
    assert [t["function"]["name"] for t in out["tools"]] == [t["name"] for t in raw["tools"]]
    assert out["tools"][0]["type"] == "function"
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
    assert out["max_tokens"] == raw["max_tokens"]


def test_prefix_stable_turn_after_turn():
    bodies = [r["body"] for r in requests("interactive") if r["kind"] != "compact"]
    compared = 0
    for before, after in itertools.pairwise(bodies):
        if len(after["messages"]) <= len(before["messages"]):
            continue
        a, b = chat(before), chat(after)
        assert b["messages"][:len(a["messages"])] == a["messages"]
        assert b["tools"] == a["tools"]
        compared += 1
    assert compared >= 4


def test_tool_choice_images_and_tool_result_images():
    png = "iVBORw0KGgo="
    raw = {"model": "x", "max_tokens": 5, "tools": [
        {"name": "Shot", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "Shot", "disable_parallel_tool_use": True},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"}, {
                "type": "image", "source": {"type": "base64", "media_type": "image/png",
                                            "data": png}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Shot",
                                               "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                          "content": [{"type": "image", "source": {
                                              "type": "base64", "media_type": "image/png",
                                              "data": png}}]}]}]}
    out = chat(raw)
    assert out["messages"][1] == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "Shot", "arguments": "{}"}}]}
    assert out["tool_choice"] == {"type": "function", "function": {"name": "Shot"}}
    assert out["parallel_tool_calls"] is False
    assert out["messages"][0]["content"][1] == {
        "type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}
    tool, images = out["messages"][2:]
    assert tool["role"] == "tool" and "attached in the next message" in tool["content"]
    assert images == {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}]}
