"""The tools' part of the token estimate is remembered per distinct tool set
(``tokens.ToolsTokens``): the same figures as computing it afresh, found again without
encoding the tools, and a new figure for any change JSON text would show."""

from __future__ import annotations

import copy
import json
from math import ceil

import pytest

from lmsd.protocol import tokens
from lmsd.protocol.pivot import Conversation, FunctionTool
from lmsd.protocol.tokens import (
    CHARS_PER_TOKEN,
    TOOL_OVERHEAD,
    ToolsTokens,
    conversation_tokens,
    estimate_tokens,
)

TOOLS = [{"name": "Bash", "description": "run a command \u00e9\U0001f600",
          "input_schema": {"type": "object", "properties": {
              "command": {"type": "string"}, "timeout": {"default": 1}}}},
         {"name": "Read", "description": "read a file",
          "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]
MESSAGES = [{"role": "user", "content": "hi"}]


def afresh(tools):
    """The estimate of ``MESSAGES`` with ``tools`` as its definition says, no cache."""
    total = sum(TOOL_OVERHEAD + ceil(len(json.dumps(t, ensure_ascii=False)) / CHARS_PER_TOKEN)
                for t in tools)
    return total + 4 + 1


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch):
    monkeypatch.setattr(tokens, "TOOLS", ToolsTokens(size=2))


def test_a_hit_gives_the_figure_computed_afresh_without_encoding_the_tools(monkeypatch):
    first = estimate_tokens(None, MESSAGES, TOOLS)
    assert first == afresh(TOOLS)
    encoded = []
    monkeypatch.setattr(tokens, "json_tokens", lambda v: encoded.append(v) or 0)
    # the next turn's request: equal values, parsed anew (other objects)
    assert estimate_tokens(None, MESSAGES, copy.deepcopy(TOOLS)) == first
    assert encoded == []


@pytest.mark.parametrize("change", [
    lambda t: t[0].update(description="run a longer command"),
    lambda t: t[0]["input_schema"]["properties"]["timeout"].update(default=True),  # 1 == True
    lambda t: t[0]["input_schema"]["properties"]["timeout"].update(default=1.0),  # 1 == 1.0
    lambda t: t[1].update(name="Glob_files"),
])
def test_any_change_json_text_shows_is_counted_afresh(change):
    assert estimate_tokens(None, MESSAGES, TOOLS) == afresh(TOOLS)
    changed = copy.deepcopy(TOOLS)
    change(changed)
    assert estimate_tokens(None, MESSAGES, changed) == afresh(changed) != afresh(TOOLS)


def test_the_last_few_tool_sets_are_kept():
    sets = [[dict(TOOLS[0], description="x" * n)] for n in (10, 100, 1000)]
    for tools in sets:
        assert estimate_tokens(None, MESSAGES, tools) == afresh(tools)
    assert len(tokens.TOOLS._entries) == 1  # one per set of names: the last one kept
    assert estimate_tokens(None, MESSAGES, sets[0]) == afresh(sets[0])
    named = [[dict(TOOLS[0], name=f"T{n}")] for n in range(3)]
    for tools in named:
        estimate_tokens(None, MESSAGES, tools)
    assert len(tokens.TOOLS._entries) == 2


def test_a_tool_without_a_string_name_is_counted_too():
    tools = [{"name": {"odd": 1}, "input_schema": {}}, {"type": "web_search_20250305"}]
    assert estimate_tokens(None, MESSAGES, tools) == afresh(tools)
    assert estimate_tokens(None, MESSAGES, copy.deepcopy(tools)) == afresh(tools)


def conv(tools):
    return Conversation(instructions="be brief", tools=tuple(tools), turns=())


def pivot_afresh(tools):
    return ceil(len("be brief") / CHARS_PER_TOKEN) + sum(
        TOOL_OVERHEAD + ceil(len(t.name + t.description) / CHARS_PER_TOKEN)
        + ceil(len(json.dumps(t.parameters, ensure_ascii=False)) / CHARS_PER_TOKEN)
        for t in tools)


def test_a_conversation_s_tools_are_remembered_with_the_same_figures(monkeypatch):
    tools = [FunctionTool(t["name"], t["description"], t["input_schema"]) for t in TOOLS]
    assert conversation_tokens(conv(tools)) == pivot_afresh(tools)
    again = [FunctionTool(t.name, t.description, copy.deepcopy(t.parameters)) for t in tools]
    with monkeypatch.context() as patched:
        patched.setattr(tokens, "_pivot_tools_tokens", lambda c: pytest.fail("counted"))
        assert conversation_tokens(conv(again)) == pivot_afresh(tools)
    changed = [tools[0], FunctionTool("Read", "read a file", {"type": "object", "x": 1.0})]
    assert conversation_tokens(conv(changed)) == pivot_afresh(changed)
