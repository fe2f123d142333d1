"""Golden tests: real Claude Code bodies through the translator, checked field by field."""

import base64
import itertools
import json

from lmsd.protocol.anthropic.items import system_text
from lmsd.protocol.anthropic.request import validate_messages_request
from tests.support.fixtures import body, requests
from tests.support.pivot import responses_body

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()
RESPONSES_KEYS = {"model", "input", "instructions", "previous_response_id", "tools",
                  "tool_choice", "parallel_tool_calls", "max_output_tokens", "temperature",
                  "top_p", "stream", "store"}


def translate(raw, model="qwen/qwen3-coder-30b", **options):
    return responses_body(validate_messages_request(raw), model=model, **options)


def test_tool_loop_turn_two_field_by_field():
    raw = body("basic_json", 1)
    out = translate(raw)
    assert set(out) <= RESPONSES_KEYS
    assert out["model"] == "qwen/qwen3-coder-30b"
    assert out["stream"] is True and out["store"] is True
    assert out["max_output_tokens"] == raw["max_tokens"] == 128000
    assert "previous_response_id" not in out and "temperature" not in out
    # system: billing header dropped, the rest joined
    assert out["instructions"] == raw["system"][1]["text"] + "\n\n" + raw["system"][2]["text"]
    assert "x-anthropic-billing-header" not in json.dumps(out)
    first, assistant, call, result = out["input"]
    # the user turn and the role:system message after it fold into one user message
    assert first["type"] == "message" and first["role"] == "user"
    user_blocks = raw["messages"][0]["content"]
    system_msg = raw["messages"][1]["content"]
    assert [p["text"] for p in first["content"]] == [
        user_blocks[0]["text"], user_blocks[1]["text"],
        "<system-reminder>\n" + system_msg + "\n</system-reminder>"]
    assert all(p["type"] == "input_text" for p in first["content"])
    text_block, tool_use = raw["messages"][2]["content"]
    assert assistant == {"type": "message", "role": "assistant",
                         "content": [{"type": "output_text", "text": text_block["text"]}]}
    assert call == {"type": "function_call", "call_id": tool_use["id"], "name": "Bash",
                    "arguments": json.dumps(tool_use["input"], separators=(",", ":"))}
    tool_result = raw["messages"][3]["content"][0]
    assert result == {"type": "function_call_output", "call_id": tool_result["tool_use_id"],
                      "output": tool_result["content"]}


def test_tools_are_flat_functions_in_order_without_anthropic_extras():
    raw = body("basic_json", 0)
    out = translate(raw)
    assert [t["name"] for t in out["tools"]] == [t["name"] for t in raw["tools"]]
    for tool, original in zip(out["tools"], raw["tools"], strict=True):
        assert tool["type"] == "function"
        assert tool["parameters"] == original["input_schema"]
        assert set(tool) <= {"type", "name", "description", "parameters"}
    assert "defer_loading" not in json.dumps(out["tools"])


def test_thinking_in_history_is_not_sent():
    raw = body("thinking_json", 1)
    assert raw["messages"][2]["content"][0]["type"] == "thinking"
    out = translate(raw)
    assert "Capture server thinking" not in json.dumps(out)
    assert [i["type"] for i in out["input"]] == ["message", "message", "function_call",
                                                 "function_call_output"]


def test_parallel_tool_results_keep_their_call_ids():
    raw = body("tools_parallel", 1)
    out = translate(raw)
    calls = [i for i in out["input"] if i["type"] == "function_call"]
    outputs = [i for i in out["input"] if i["type"] == "function_call_output"]
    assert [c["call_id"] for c in calls] == [o["call_id"] for o in outputs]
    assert len(calls) == 2
    assert all(isinstance(o["output"], str) for o in outputs)


def test_compact_request_and_empty_system_message():
    compact = next(r["body"] for r in requests("inter_compact") if r["kind"] == "compact")
    out = translate(compact)
    assert out["input"][-1]["role"] == "user"
    assert "CRITICAL: Respond with TEXT ONLY" in out["input"][-1]["content"][-1]["text"]
    after = requests("inter_compact")[3]["body"]
    assert any(m["role"] == "system" and m["content"] == [] for m in after["messages"])
    translated = translate(after)
    assert not any(p["text"] == "<system-reminder>\n\n</system-reminder>"
                   for i in translated["input"] if i["type"] == "message"
                   for p in i["content"])


def test_title_generation_side_request():
    aux = next(r["body"] for r in requests("inter_nodisable") if r["kind"] == "aux")
    out = translate(aux)
    assert "tools" not in out  # tools: [] sends none
    assert out["input"][0]["role"] == "user"


def test_history_renders_prefix_stable_across_turns():
    """Turn N's items extend turn N-1's byte for byte, although Claude Code moves the
    cache_control breakpoint and collapses single text blocks to strings."""
    bodies = [r["body"] for r in requests("interactive") if r["kind"] != "compact"]
    compared = 0
    for before, after in itertools.pairwise(bodies):
        if len(after["messages"]) <= len(before["messages"]):
            continue
        compared += 1
        a = json.dumps(translate(before)["input"])
        b = json.dumps(translate(after)["input"])
        assert b.startswith(a[:-1]), "the rendered history changed between turns"
        assert translate(before)["instructions"] == translate(after)["instructions"]
    assert compared >= 4


def test_billing_header_kept_when_configured():
    out = translate(body("basic_json"), strip_billing=False)
    assert out["instructions"].startswith("x-anthropic-billing-header:")


def test_allowed_tools_filter():
    out = translate(body("basic_json"), allowed_tools=frozenset({"Bash", "Read"}))
    assert [t["name"] for t in out["tools"]] == ["Bash", "Read"]


def simple(messages, **extra):
    return {"model": "claude-sonnet-4-6", "max_tokens": 100, "messages": messages, **extra}


def test_images_go_in_their_own_messages():
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG}}
    out = translate(simple([{"role": "user", "content": [
        {"type": "text", "text": "what is this"}, image, {"type": "text", "text": "and?"}]}]))
    kinds = [[p["type"] for p in i["content"]] for i in out["input"]]
    assert kinds == [["input_text"], ["input_image"], ["input_text"]]
    assert out["input"][1]["content"][0]["image_url"] == f"data:image/png;base64,{PNG}"


def test_tool_result_errors_images_and_lists_become_strings():
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                         "data": PNG}}
    out = translate(simple([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "Shot", "input": {}},
            {"type": "tool_use", "id": "toolu_2", "name": "Bash", "input": {"command": "x"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1",
             "content": [{"type": "text", "text": "screen:"}, image]},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom",
             "is_error": True}]},
    ]))
    outputs = [i for i in out["input"] if i["type"] == "function_call_output"]
    assert outputs[0]["output"] == "screen:\n[image 1: image/jpeg, attached in the next message]"
    assert outputs[1]["output"] == "[tool error] boom"
    assert out["input"][-1] == {"type": "message", "role": "user", "content": [
        {"type": "input_image", "image_url": f"data:image/jpeg;base64,{PNG}",
         "detail": "auto"}]}


def test_a_tool_search_reference_becomes_text_and_the_deferred_tool_is_sent():
    """Claude Code 2.1.337's ToolSearch answers with ``tool_reference`` blocks (it was a
    400, which the CLI resent three times, then fell back to every tool inline)."""
    deferred = {"name": "TaskCreate", "description": "Create a task", "defer_loading": True,
                "input_schema": {"type": "object", "properties": {}}}
    raw = simple([
        {"role": "user", "content": "plan it"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "ToolSearch",
             "input": {"query": "select:TaskCreate"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1",
             "content": [{"type": "tool_reference", "tool_name": "TaskCreate"}]}]},
    ])
    raw["tools"] = [deferred]
    out = translate(raw)
    [output] = [i for i in out["input"] if i["type"] == "function_call_output"]
    assert output["output"] == "[tool TaskCreate loaded: call it like any other]"
    assert [tool["name"] for tool in out["tools"]] == ["TaskCreate"]


def test_documents_and_search_results_become_text():
    out = translate(simple([{"role": "user", "content": [
        {"type": "document", "title": "notes", "source": {"type": "text", "data": "body"}},
        {"type": "search_result", "source": "https://x", "title": "T",
         "content": [{"type": "text", "text": "found"}]}]}]))
    parts = [p["text"] for p in out["input"][0]["content"]]
    assert parts[0] == '<document title="notes">\nbody\n</document>'
    assert "found" in parts[1] and "https://x" in parts[1]


def test_sampling_and_tool_choice_mapping():
    tools = [{"name": "a", "input_schema": {"type": "object"}},
             {"name": "b", "input_schema": {"type": "object"}}]
    out = translate(simple([{"role": "user", "content": "hi"}], tools=tools, temperature=0.2,
                           top_p=0.9, tool_choice={"type": "tool", "name": "b",
                                                   "disable_parallel_tool_use": True}))
    assert out["temperature"] == 0.2 and out["top_p"] == 0.9
    assert out["tool_choice"] == "required"
    assert [t["name"] for t in out["tools"]] == ["b"]
    assert out["parallel_tool_calls"] is False
    any_out = translate(simple([{"role": "user", "content": "hi"}], tools=tools,
                               tool_choice={"type": "any"}))
    assert any_out["tool_choice"] == "required" and len(any_out["tools"]) == 2


def test_system_text_forms():
    assert system_text("plain") == "plain"
    assert system_text([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]) == "a\n\nb"
    assert system_text(None) == ""
