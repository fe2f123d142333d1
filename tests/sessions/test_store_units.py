"""The session store's smaller parts as units: where a conversation's prefix is, dropped
nodes, config lookup, stored counters of older and newer versions, upstream moves, and
what a reset of one session takes with it."""

from __future__ import annotations

import sqlite3

from lmsd.protocol.chain import ChainNode
from lmsd.sessions.config import SessionConfig
from lmsd.sessions.recent import RecentRequest, RecentRequests
from lmsd.sessions.store import SessionStats, SessionStore
from tests.sessions.test_store import KEY, Clock, node

A, B = "http://a:1234", "http://b:1234"


def held_by(rid: str, upstream: str) -> ChainNode:
    return ChainNode(rid, 2, f"h-{rid}", "ctx", upstream=upstream)


async def turn(store: SessionStore, upstream: str | None, key=KEY) -> None:
    await store.record_turn(key, hit=True, miss=None, items_sent=1, items_full=2,
                            tokens_sent=10, tokens_full=20, response_id=None,
                            upstream=upstream)


async def test_the_holder_is_the_upstream_of_the_most_recently_used_node():
    clock = Clock()
    store = SessionStore(None, clock=clock)
    await store.open()
    assert store.holder("s", "main") is None
    await store.add_node(("s", "main", "m1"), held_by("old", A))
    clock.now += 1
    await store.add_node(("s", "main", "m2"), held_by("new", B))  # any model of it
    clock.now += 1
    await store.add_node(("s", "agent-1", "m1"), held_by("agent", A))  # another agent
    await store.add_node(("t", "main", "m1"), held_by("other", A))  # another session
    clock.now += 1
    await store.add_node(("s", "main", "m1"), held_by("nowhere", ""))  # held by no one
    assert store.holder("s", "main") == B
    clock.now += 1
    await store.touch(store.nodes(("s", "main", "m1"))[0])  # "old" is used again
    assert store.holder("s", "main") == A
    assert store.holder("s", "agent-1") == A and store.holder("u", "main") is None


async def test_a_dropped_node_is_gone_after_a_restart(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = SessionStore(path)
    await store.open()
    await store.add_node(KEY, node("kept"))
    await store.add_node(KEY, node("dropped"))
    await store.drop_node("dropped")
    await store.drop_node("never-there")  # nothing to drop: no error
    assert [n.response_id for n in store.nodes(KEY)] == ["kept"]
    await store.aclose()
    again = SessionStore(path)
    await again.open()
    assert [n.response_id for n in again.nodes(KEY)] == ["kept"]
    assert again.summary() == {"nodes": 1, "sessions": 0, "persistent": True,
                               "path": str(path)}
    await again.aclose()


async def test_config_is_the_first_configured_of_the_ids_asked():
    store = SessionStore(None)
    await store.set_config("session", SessionConfig("m-session"))
    await store.set_config("agent", SessionConfig("m-agent"))
    assert store.config("agent", "session").model == "m-agent"
    assert store.config(None, "", "session").model == "m-session"
    assert store.config("unknown") == SessionConfig()
    assert store.config() == SessionConfig()


def test_stored_counters_of_older_and_newer_versions_load():
    stats = SessionStats.from_json({"turns": 3, "misses": {"no_node": 1,
                                                           "stateless_upstream": 2},
                                    "a_field_of_a_newer_lmsd": 7})
    assert (stats.turns, stats.misses, stats.unchained_turns) == (3, {"no_node": 1}, 2)
    assert stats.last_turn["prefilled_tokens"] is None  # a field it did not have
    assert stats.cached_percent is None


async def test_a_turn_to_another_upstream_counts_as_a_move():
    store = SessionStore(None)
    await turn(store, A)
    await turn(store, None)  # the upstream unknown: no move, and A stays
    await turn(store, A)
    await turn(store, B)
    await turn(store, A)
    stats = store.stats[KEY]
    assert (stats.turns, stats.upstream, stats.upstream_moves) == (5, A, 2)
    assert (stats.items_sent, stats.tokens_full, stats.chain_hits) == (5, 100, 5)


async def test_a_reset_of_one_session_takes_its_recent_requests_only(tmp_path):
    store = SessionStore(tmp_path / "s.sqlite3")
    await store.open()
    recent = RecentRequests(store)
    for conversation in ("s/main", "s/agent-1", "sx/main"):
        recent.note(RecentRequest(A, conversation, "/v1/messages", {}, 1.0))
    await recent.flush()
    await turn(store, A, ("s", "main", "m"))
    await turn(store, A, ("sx", "main", "m"))
    await store.reset("s")
    assert list(store.stats) == [("sx", "main", "m")]

    def rows(db: sqlite3.Connection) -> list[tuple[str]]:
        return list(db.execute("SELECT conversation FROM recent_requests"))

    assert await store.run(rows) == [("sx/main",)]
    await store.reset()
    assert await store.run(rows) == [] and store.stats == {}
    await store.aclose()


async def test_a_memory_only_store_runs_no_sql():
    store = SessionStore(None)
    await store.open()
    assert await store.run(lambda db: db.execute("SELECT 1")) is None
    assert store.summary() == {"nodes": 0, "sessions": 0, "persistent": False, "path": None}
