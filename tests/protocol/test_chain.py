"""The chain matcher over real Claude Code turn sequences."""

import copy
import itertools

import pytest

from lmsd.protocol.anthropic.request import validate_messages_request
from lmsd.protocol.chain import ChainNode, choose_node
from lmsd.protocol.plan import next_node
from tests.support import pivot
from tests.support.fixtures import requests

MODEL = "qwen/qwen3-coder-30b"


def plan(raw, nodes=(), strip=True, model=MODEL):
    return pivot.plan(validate_messages_request(raw), model=model, nodes=nodes,
                      strip_billing=strip)


def answered(raw, later):
    """The node lmsd stores for ``raw``, given the assistant turn Claude Code echoed in
    the ``later`` request (what lmsd streamed, as the client holds it)."""
    p = plan(raw)
    assistant = later["messages"][len(raw["messages"])]
    assert assistant["role"] == "assistant"
    return next_node(p, pivot.answer(assistant["content"]), "resp_" + str(len(raw["messages"])),
                     chained=False)


@pytest.mark.parametrize("run", ["basic_json", "thinking_json", "tools_parallel", "bare",
                                 "model_flag", "stream_json"])
def test_turn_two_extends_turn_one(run):
    first, second = (r["body"] for r in requests(run)[:2])
    node = answered(first, second)
    p = plan(second, [node])
    assert p.node is node and p.miss is None
    assert p.delta["previous_response_id"] == node.response_id
    # only the tool results go up; everything before is in LM Studio already
    assert [i["type"] for i in p.delta["input"]] == ["function_call_output"] * (
        len(p.delta["input"]))
    assert p.delta["instructions"] == p.full["instructions"]
    assert p.delta["tools"] == p.full["tools"]


def test_cache_control_moves_and_string_collapse_are_normalized():
    first, second = (r["body"] for r in requests("basic_json")[:2])
    # turn 1 has the breakpoint on the system message's single text block; turn 2 has it
    # collapsed to a plain string and the breakpoint on the tool_result
    assert isinstance(first["messages"][1]["content"], list)
    assert isinstance(second["messages"][1]["content"], str)
    assert plan(second, [answered(first, second)]).node is not None


def test_interactive_session_chains_every_turn():
    bodies = [r["body"] for r in requests("interactive")]
    nodes: list[ChainNode] = []
    hits = 0
    for before, after in itertools.pairwise(bodies):
        if len(after["messages"]) > len(before["messages"]) and \
                after["messages"][len(before["messages"])]["role"] == "assistant":
            nodes.append(answered(before, after))
        p = plan(after, nodes)
        hits += p.node is not None
    assert hits >= 4


def test_thinking_blocks_do_not_break_the_match():
    first, second = (r["body"] for r in requests("thinking_json")[:2])
    node = answered(first, second)
    edited = copy.deepcopy(second)
    edited["messages"][2]["content"][0]["thinking"] = "something else entirely"
    assert plan(edited, [node]).node is node


def test_an_edited_earlier_message_is_a_mismatch():
    first, second = (r["body"] for r in requests("basic_json")[:2])
    node = answered(first, second)
    edited = copy.deepcopy(second)
    edited["messages"][0]["content"][1]["text"] = "a different prompt"
    p = plan(edited, [node])
    assert p.node is None and p.miss == "history_mismatch" and p.delta is None


def test_a_changed_tool_result_after_the_node_still_chains():
    first, second = (r["body"] for r in requests("basic_json")[:2])
    node = answered(first, second)
    edited = copy.deepcopy(second)
    edited["messages"][3]["content"][0]["content"] = "different output"
    assert plan(edited, [node]).node is node


def test_changed_system_tools_or_model_start_a_new_chain():
    first, second = (r["body"] for r in requests("basic_json")[:2])
    node = answered(first, second)
    system = copy.deepcopy(second)
    system["system"][2]["text"] += " (edited)"
    assert plan(system, [node]).miss == "context_changed"
    tools = copy.deepcopy(second)
    tools["tools"] = tools["tools"][:-1]
    assert plan(tools, [node]).miss == "context_changed"
    assert plan(second, [node], model="other/model").miss == "context_changed"


def test_billing_header_is_ignored_unless_kept():
    first, second = (r["body"] for r in requests("basic_json")[:2])
    billing = copy.deepcopy(second)
    billing["system"][0]["text"] = billing["system"][0]["text"].replace("3d0", "576")
    assert plan(billing, [answered(first, second)]).node is not None
    p1 = plan(first, strip=False)
    assistant = second["messages"][2]["content"]
    node = next_node(p1, pivot.answer(assistant), "resp_k", chained=False)
    assert plan(second, [node], strip=False).node is node
    assert plan(billing, [node], strip=False).miss == "context_changed"


def test_compact_replaces_the_history():
    bodies = [r["body"] for r in requests("inter_compact")]
    node = answered(bodies[0], bodies[1])
    after_compact = bodies[3]
    p = plan(after_compact, [node])
    assert p.node is None and p.miss == "history_mismatch"


def test_a_fresh_one_message_conversation_never_chains():
    first, second = (r["body"] for r in requests("basic_json")[:2])
    node = answered(first, second)
    assert plan(first, [node]).node is None


def test_the_longest_matching_node_wins_and_rewinds_fork():
    bodies = [r["body"] for r in requests("interactive")[:4]]
    n1 = answered(bodies[0], bodies[1])
    n2 = answered(bodies[1], bodies[2])
    assert plan(bodies[2], [n1, n2]).node is n2
    # rewind: an earlier tool result edited -> fork from the node before it
    rewound = copy.deepcopy(bodies[2])
    assert rewound["messages"][n1.length]["content"][0]["type"] == "tool_result"
    rewound["messages"][n1.length]["content"][0]["content"] = "edited output"
    p = plan(rewound, [n1, n2])
    assert p.node is n1
    first_sent = p.delta["input"][0]  # the edited result onwards, nothing before it
    assert first_sent["type"] == "function_call_output"
    assert first_sent["output"] == "edited output"


def test_choose_node_reasons():
    assert choose_node([], ["r", "a"], "ctx").miss == "no_node"


def test_traffic_counts_delta_against_full():
    first, second = (r["body"] for r in requests("basic_json")[:2])
    p = plan(second, [answered(first, second)])
    sent, full, tok_sent, tok_full = p.traffic(chained=True)
    assert (sent, full) == (1, 4)
    assert 0 < tok_sent < tok_full / 10
