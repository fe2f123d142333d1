"""What a finished turn leaves in the store (``sessions/turns.py``), as a unit: the chain
node of a complete answer, none for a repaired one, and the counters of each."""

from __future__ import annotations

from lmsd.protocol.anthropic.request import validate_messages_request
from lmsd.sessions.store import SessionStore
from lmsd.sessions.turns import Outcome, remember_turn
from tests.support.pivot import answer, plan

KEY = ("s1", "main", "m")
REQ = validate_messages_request({"model": "claude-x", "max_tokens": 10,
                                 "messages": [{"role": "user", "content": "hi"}]})
ANSWER = answer([{"type": "text", "text": "hello"}])


def _outcome(**fields: object) -> Outcome:
    base: dict = {"message_id": "msg_1", "front": "anthropic", "upstream": "a",
                  "chained": False, "stale": False, "answer": ANSWER, "response_id": "resp_1"}
    return Outcome(**{**base, **fields})


async def test_a_complete_answer_becomes_the_next_turns_chain_node():
    store = SessionStore(None)
    planned = plan(REQ)
    await remember_turn(store, KEY, planned, _outcome())
    [node] = store.nodes(KEY)
    assert (node.response_id, node.upstream, node.parent) == ("resp_1", "a", None)
    stats = store.stats[KEY]
    assert (stats.turns, stats.chain_hits, stats.last_response_id) == (1, 0, "resp_1")
    assert stats.misses == {planned.miss: 1} and stats.fronts == ["anthropic"]
    assert stats.upstream == "a"


async def test_a_repaired_answer_is_counted_but_never_chained_on():
    store = SessionStore(None)
    await remember_turn(store, KEY, plan(REQ), _outcome(repaired=2))
    assert store.nodes(KEY) == []
    stats = store.stats[KEY]
    assert stats.turns == 1 and stats.repaired_tool_calls == 2
    assert stats.last_response_id is None


async def test_a_stale_chain_counts_as_its_own_miss():
    store = SessionStore(None)
    await remember_turn(store, KEY, plan(REQ), _outcome(stale=True, answer=None))
    assert store.nodes(KEY) == []
    assert store.stats[KEY].misses == {"stale_upstream": 1}
