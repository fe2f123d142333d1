"""Property: whatever the client does (append, retry, rewind, compact, concurrent turns),
the context LM Studio reconstructs from a chained request equals the client's history.

A fake LM Studio keeps, per response id, the context it answered plus its output; a
chained request's context is the stored chain plus the delta's items.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lmsd.protocol.anthropic.request import validate_messages_request
from lmsd.protocol.plan import next_node
from tests.support.pivot import answer, input_items, message_items
from tests.support.pivot import plan as plan_turn

SYSTEM = "You are a coding agent."
TOOLS = [{"name": "Bash", "input_schema": {"type": "object"}}]


class FakeLMStudio:
    def __init__(self) -> None:
        self.stored: dict[str, list[dict[str, Any]]] = {}
        self.count = 0

    def answer(self, body: dict[str, Any], reply: list[dict[str, Any]]) -> tuple[str, list]:
        prev = body.get("previous_response_id")
        context = (self.stored[prev] if prev else []) + body["input"]
        self.count += 1
        rid = f"resp_{self.count}"
        self.stored[rid] = context + message_items({"role": "assistant", "content": reply})
        return rid, context


def reply_for(n: int, tool: bool) -> list[dict[str, Any]]:
    if tool:
        return [{"type": "text", "text": f"step {n}"},
                {"type": "tool_use", "id": f"call_{n}", "name": "Bash",
                 "input": {"command": f"echo {n}"}}]
    return [{"type": "text", "text": f"answer {n}"}]


def follow_up(reply: list[dict[str, Any]], n: int) -> dict[str, Any]:
    uses = [b for b in reply if b["type"] == "tool_use"]
    if uses:
        return {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": u["id"], "content": f"out {n}"}
            for u in uses]}
    return {"role": "user", "content": [{"type": "text", "text": f"next {n}",
                                         "cache_control": {"type": "ephemeral"}}]}


ops = st.lists(st.tuples(st.sampled_from(["append", "retry", "rewind", "compact",
                                          "concurrent", "fail"]),
                         st.booleans(), st.integers(min_value=0, max_value=50)),
               min_size=1, max_size=25)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_reconstructed_context_always_equals_the_history(operations):
    upstream = FakeLMStudio()
    nodes = []
    history: list[dict[str, Any]] = [{"role": "user", "content": "start"}]

    def turn(messages, tool, n, *, fail=False):
        raw = {"model": "m", "max_tokens": 10, "system": SYSTEM, "tools": TOOLS,
               "messages": messages}
        req = validate_messages_request(raw)
        plan = plan_turn(req, model="m", nodes=list(nodes))
        body = plan.bodies[0]
        reply = reply_for(n, tool)
        rid, context = upstream.answer(body, reply)
        assert context == input_items(messages), "LM Studio's context differs"
        if plan.node is not None:
            assert len(body["input"]) < len(plan.full["input"])
        if not fail:
            nodes.append(next_node(plan, answer(reply), rid, chained=plan.delta is not None))
            return reply
        return None

    for op, tool, n in operations:
        if op == "compact":
            history = [{"role": "user", "content": f"summary {n}"}]
        elif op == "rewind" and len(history) > 2:
            cut = 1 + 2 * (n % ((len(history) - 1) // 2 + 1))
            history = history[:min(cut, len(history))]
            if history[-1]["role"] != "user":
                history = history[:-1]
        if op == "fail":  # the answer is lost: nothing stored, the client retries later
            turn(history, tool, n, fail=True)
            continue
        if op == "concurrent":  # two turns from the same history: a fork
            turn(history, not tool, n + 100)
        if op == "retry":
            turn(history, tool, n + 200)
        reply = turn(history, tool, n)
        history = [*history, {"role": "assistant", "content": reply}, follow_up(reply, n)]


def test_an_append_only_session_chains_every_turn_after_the_first():
    upstream, nodes = FakeLMStudio(), []
    history: list[dict[str, Any]] = [{"role": "user", "content": "start"}]
    for n in range(12):
        req = validate_messages_request({"model": "m", "max_tokens": 10, "system": SYSTEM,
                                         "tools": TOOLS, "messages": history})
        plan = plan_turn(req, model="m", nodes=list(nodes))
        assert (plan.node is not None) == (n > 0)
        reply = reply_for(n, tool=n % 3 != 2)
        rid, context = upstream.answer(plan.bodies[0], reply)
        assert context == plan.full["input"]
        nodes.append(next_node(plan, answer(reply), rid, chained=plan.node is not None))
        history = [*history, {"role": "assistant", "content": reply}, follow_up(reply, n)]
