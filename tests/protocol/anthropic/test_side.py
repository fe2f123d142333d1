"""Side requests recognised by what they are, on captured Claude Code requests: with the
small/fast model setting naming a local model, a title request is still a side request,
and no turn of a conversation (main, after a tool, compaction, a subagent) is one."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from lmsd.protocol.anthropic.side import is_haiku_name, is_side_request

FIXTURES = Path(__file__).parents[2] / "fixtures"
LOCAL = "qwen/qwen3-coder-30b"


def captured(run: str) -> list[dict[str, Any]]:
    """(kind, body) of each /v1/messages request of a captured run."""
    requests = json.loads((FIXTURES / f"{run}.json").read_text())["requests"]
    return [{**r["body"], "kind": r.get("kind")} for r in requests
            if r["path"] == "/v1/messages"]


def local(body: dict[str, Any]) -> dict[str, Any]:
    """As sent with ANTHROPIC_SMALL_FAST_MODEL / ANTHROPIC_MODEL naming a local model."""
    return {**copy.deepcopy(body), "model": LOCAL}


def title() -> dict[str, Any]:
    [aux] = [b for b in captured("inter_nodisable") if b["kind"] == "aux"]
    assert aux["model"] == "env-small-fast-model" and not aux.get("tools")
    return aux


@pytest.mark.parametrize("run", ["interactive", "inter_compact", "bare", "basic_json",
                                 "tools_parallel", "thinking_json", "inter_nodisable"])
def test_no_turn_of_a_conversation_is_a_side_request(run):
    turns = [b for b in captured(run) if b["kind"] != "aux"]
    assert turns and {b["kind"] for b in turns} <= {"main_first", "main_after_tool",
                                                       "compact"}
    for body in turns:
        assert not is_side_request(local(body)), (run, body["kind"])


def test_a_title_request_naming_a_local_model_is_a_side_request():
    assert is_side_request(local(title()))
    assert is_side_request(title())  # "env-small-fast-model": not a Claude name either


def test_a_structured_answer_without_tools_or_thinking_is_a_side_request():
    """A program's question (it wants JSON of a schema), nothing to call, nothing to
    think; a plain chat's tool-less first turn keeps its own key."""
    body = {"model": LOCAL, "max_tokens": 512, "system": "Summarize in one line.",
            "messages": [{"role": "user", "content": "a long conversation..."}]}
    assert not is_side_request(body)  # a first turn of any chat looks like this
    schema = {"format": {"type": "json_schema", "schema": {}}}
    assert is_side_request({**body, "output_config": schema})
    assert is_side_request({**body, "output_format": schema["format"]})
    assert is_side_request({**body, "output_config": schema, "thinking": {"type": "disabled"}})
    assert not is_side_request({**body, "output_config": schema,
                                "thinking": {"type": "adaptive"}})
    tools = [{"name": "Bash", "input_schema": {"type": "object"}}]
    assert not is_side_request({**body, "output_config": schema, "tools": tools})


def test_a_subagent_turn_is_not_a_side_request_unless_it_asks_for_haiku():
    [main] = [b for b in captured("interactive") if b["kind"] == "main_first"][:1]
    subagent = local(main)
    subagent["system"] = [{"type": "text", "text": "You are a file search specialist."}]
    subagent["tools"] = subagent["tools"][:3]
    assert not is_side_request(subagent)
    assert is_side_request({**subagent, "model": "claude-haiku-4-5-20251001"})  # as before
    assert is_haiku_name("claude-3-5-haiku-latest") and not is_haiku_name(LOCAL)
