"""The reply's turn is what the front builds from Codex's echo: the next request chains."""

from __future__ import annotations

from lmsd.protocol.plan import next_node, plan_turn
from lmsd.protocol.responses.encode import ResponsesEncoder
from lmsd.protocol.responses.front import parse_request
from lmsd.protocol.responses.reply import ResponsesReply
from tests.protocol.responses.test_encode import ANSWER, EXEC, NS, PATCH
from tests.support.fixtures import codex_request

DEV = {"type": "message", "id": "msg_dev", "role": "developer",
       "content": [{"type": "input_text", "text": "base"}]}
USER = {"type": "message", "id": "msg_u", "role": "user",
        "content": [{"type": "input_text", "text": "go"}]}


def codex(items, tools=(EXEC, NS, PATCH, {"type": "web_search"})):
    return {"model": "gpt-5.5", "stream": True, "input": items, "tools": list(tools),
            "store": False, "prompt_cache_key": "t"}


def answer(req, events):
    reply = ResponsesReply(ResponsesEncoder(response_id="resp_x", model=req.model,
                                            estimate=req.estimate, tools=req.tools,
                                            created_at=1), message_id="msg_x")
    out = reply.start()
    for e in events:
        out += reply.feed(e)
    return reply, out + reply.finish()


def codex_echo(out):
    """What Codex puts in its next request: each output_item.done item, whole."""
    items = []
    for e in out:
        if e["type"] == "response.output_item.done":
            item = dict(e["item"])
            if item["type"] == "reasoning":
                item["encrypted_content"] = None
            items.append(item)
    return items


def test_codex_echo_chains_with_only_the_new_items():
    first = [DEV, USER]
    req1 = parse_request(codex(first))
    plan1 = plan_turn(req1.conversation, model="m", nodes=[])
    reply, out = answer(req1, ANSWER)
    assert reply.chainable and reply.response_id == "resp_up"
    node = next_node(plan1, reply.turn(), reply.response_id, chained=False)
    outputs = [{"type": "function_call_output", "id": "fco_1", "call_id": "call_1",
                "output": "ok"},
               {"type": "custom_tool_call_output", "id": "ctco_1", "call_id": "call_2",
                "output": "Success"}]
    req2 = parse_request(codex([*first, *codex_echo(out), *outputs]))
    plan2 = plan_turn(req2.conversation, model="m", nodes=[node])
    assert plan2.delta is not None, plan2.miss
    assert plan2.delta["previous_response_id"] == "resp_up"
    assert plan2.delta["input"] == [
        {"type": "function_call_output", "call_id": "call_1", "output": "ok"},
        {"type": "function_call_output", "call_id": "call_2", "output": "Success"}]


def test_captured_resend_chains_after_a_text_answer():
    """resp-resume request 4 (a cold resume): its history up to the last answer, then the
    answer lmsd gave, echoed as Codex echoes it."""
    captured = codex_request("resp-resume", 4)["body"]
    items = captured["input"]
    cut = next(i for i, it in enumerate(items) if it.get("role") == "assistant")
    req1 = parse_request({**captured, "input": items[:cut]})
    plan1 = plan_turn(req1.conversation, model="m", nodes=[])
    from lmsd.protocol.pivot import Finished, TextDone
    reply, out = answer(req1, [TextDone("msg_ca948e71055447b5a70723df/0", "done"),
                               Finished("end", None, "resp_up")])
    node = next_node(plan1, reply.turn(), "resp_up", chained=False)
    echoed = codex_echo(out)
    assert echoed[0]["id"] == "msg_ca948e71055447b5a70723df"
    req2 = parse_request({**captured, "input": [*items[:cut], *echoed, *items[cut + 1:]]})
    plan2 = plan_turn(req2.conversation, model="m", nodes=[node])
    assert plan2.delta is not None, plan2.miss
    assert len(plan2.delta["input"]) == len(items) - cut - 1


def test_failed_answers_are_not_chainable():
    from lmsd.protocol.failures import UpstreamBroken
    from lmsd.protocol.pivot import Failed, TextDelta
    req = parse_request(codex([USER]))
    reply, out = answer(req, [TextDelta("m/0", "a"), Failed(UpstreamBroken("x"))])
    assert not reply.chainable and out[-1]["type"] == "response.failed"
