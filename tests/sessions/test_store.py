import json
import sqlite3

from lmsd.protocol.chain import ChainNode
from lmsd.sessions.config import SessionConfig
from lmsd.sessions.store import SessionStore

KEY = ("s", "main", "m")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def node(rid: str, length: int = 2) -> ChainNode:
    return ChainNode(rid, length, f"h-{rid}", "ctx")


async def test_nodes_persist_across_reopen(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = SessionStore(path)
    await store.open()
    await store.add_node(KEY, node("r1"))
    await store.record_turn(KEY, hit=False, miss="no_node", items_sent=4, items_full=4,
                            tokens_sent=100, tokens_full=100, response_id="r1")
    await store.set_config("s", SessionConfig("m2", frozenset({"Bash"})))
    await store.aclose()
    again = SessionStore(path)
    await again.open()
    assert [n.response_id for n in again.nodes(KEY)] == ["r1"]
    assert again.stats[KEY].misses == {"no_node": 1}
    assert again.config("s") == SessionConfig("m2", frozenset({"Bash"}))
    assert again.persistent
    await again.aclose()


async def test_lru_bound_drops_the_least_recently_used(tmp_path):
    clock = Clock()
    store = SessionStore(tmp_path / "s.sqlite3", max_nodes=3, clock=clock)
    await store.open()
    for rid in ("a", "b", "c"):
        clock.now += 1
        await store.add_node(KEY, node(rid))
    clock.now += 1
    await store.touch(store.nodes(KEY)[0])  # "a" is used again
    await store.add_node(KEY, node("d"))
    assert sorted(n.response_id for n in store.nodes(KEY)) == ["a", "c", "d"]
    await store.aclose()
    reopened = SessionStore(tmp_path / "s.sqlite3", max_nodes=3, clock=clock)
    await reopened.open()
    assert sorted(n.response_id for n in reopened.nodes(KEY)) == ["a", "c", "d"]
    await reopened.aclose()


async def test_ttl_expires_nodes(tmp_path):
    clock = Clock()
    store = SessionStore(tmp_path / "s.sqlite3", ttl=60, clock=clock)
    await store.open()
    await store.add_node(KEY, node("old"))
    clock.now += 61
    assert store.nodes(KEY) == []
    await store.add_node(KEY, node("new"))
    assert store.node_count() == 1
    await store.aclose()


async def test_reset_one_session_or_all(tmp_path):
    store = SessionStore(tmp_path / "s.sqlite3")
    await store.open()
    await store.add_node(("a", "main", "m"), node("1"))
    await store.add_node(("b", "main", "m"), node("2"))
    assert await store.reset("a") == 1
    assert store.nodes(("a", "main", "m")) == [] and store.node_count() == 1
    assert await store.reset() == 1
    assert store.node_count() == 0
    await store.aclose()


async def test_corrupt_file_is_moved_aside(tmp_path):
    path = tmp_path / "s.sqlite3"
    path.write_bytes(b"garbage" * 1000)
    store = SessionStore(path)
    await store.open()
    assert store.persistent
    await store.add_node(KEY, node("r"))
    assert len(list(tmp_path.glob("s.sqlite3.corrupt-*"))) == 1
    await store.aclose()


async def test_read_only_database_keeps_serving_from_memory(tmp_path):
    path = tmp_path / "s.sqlite3"
    sqlite3.connect(path).close()
    store = SessionStore(path)
    await store.open()

    class ReadOnly:  # a database that starts refusing writes
        def execute(self, *a, **k):
            raise sqlite3.OperationalError("attempt to write a readonly database")

        def executemany(self, *a, **k):
            raise sqlite3.OperationalError("attempt to write a readonly database")

        def close(self):
            pass

    store._db = ReadOnly()  # type: ignore[assignment]
    await store.add_node(KEY, node("r"))
    assert not store.persistent
    assert [n.response_id for n in store.nodes(KEY)] == ["r"]


async def test_memory_only_store():
    store = SessionStore(None)
    await store.open()
    await store.add_node(KEY, node("r"))
    assert store.nodes(KEY)[0].response_id == "r" and not store.persistent


async def test_session_counters_are_bounded_and_expire(tmp_path):
    clock = Clock()
    store = SessionStore(tmp_path / "s.sqlite3", clock=clock, ttl=100, max_sessions=3)
    await store.open()
    for n in range(5):
        clock.now += 1
        await store.record_turn((f"s{n}", "main", "m"), hit=False, miss="no_node",
                                items_sent=1, items_full=1, tokens_sent=1, tokens_full=1,
                                response_id=None)
    assert sorted(k[0] for k in store.stats) == ["s2", "s3", "s4"]
    clock.now += 101
    await store.record_turn(("new", "main", "m"), hit=True, miss=None, items_sent=1,
                            items_full=1, tokens_sent=1, tokens_full=1, response_id=None)
    assert list(store.stats) == [("new", "main", "m")]
    await store.aclose()
    reopened = SessionStore(tmp_path / "s.sqlite3", clock=clock, ttl=100, max_sessions=3)
    await reopened.open()
    assert list(reopened.stats) == [("new", "main", "m")]
    await reopened.aclose()


async def test_fronts_persist_and_older_rows_load(tmp_path):
    """A session records the fronts its turns came by, in the JSON counters (no schema
    change): rows written before ``fronts`` existed load with none, and a field from a
    newer lmsd is ignored."""
    path = tmp_path / "s.sqlite3"
    store = SessionStore(path)
    await store.open()
    turn = {"hit": False, "miss": "no_node", "items_sent": 1, "items_full": 1,
            "tokens_sent": 10, "tokens_full": 10, "response_id": None}
    await store.record_turn(KEY, **turn, front="openai_responses")
    await store.record_turn(KEY, **turn, front="openai_responses")
    await store.record_turn(KEY, **turn, front="openai_chat")
    await store.record_turn(("claude", "main", "m"), **turn)  # the default: Anthropic's
    assert store.stats[KEY].fronts == ["openai_responses", "openai_chat"]
    await store.aclose()
    db = sqlite3.connect(path)
    old = {"turns": 3, "chain_hits": 1, "misses": {}, "items_sent": 1, "items_full": 2,
           "tokens_sent": 3, "tokens_full": 4, "last_response_id": None,
           "created": 1000.0, "last_used": 9e9}
    with db:
        db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)",
                   ("old", "main", "m", json.dumps(old)))
        db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)",
                   ("newer", "main", "m", json.dumps({**old, "from_the_future": 1})))
    db.close()
    again = SessionStore(path)
    await again.open()
    assert again.stats[KEY].fronts == ["openai_responses", "openai_chat"]
    assert again.stats[("claude", "main", "m")].fronts == ["anthropic"]
    assert again.stats[("old", "main", "m")].fronts == []
    assert again.stats[("old", "main", "m")].turns == 3
    assert again.stats[("newer", "main", "m")].turns == 3
    await again.aclose()


async def test_prefill_totals_and_the_last_turn_persist_and_older_rows_load(tmp_path):
    """Each turn adds what the engine prefilled and found cached (when it said) and is
    the session's last_turn; rows written before these fields load with zeros and an
    empty last turn."""
    path, clock = tmp_path / "s.sqlite3", Clock()
    store = SessionStore(path, clock=clock)
    await store.open()
    turn = {"hit": False, "miss": None, "unchained": True, "items_sent": 1, "items_full": 1,
            "tokens_sent": 10, "tokens_full": 10, "response_id": None}
    await store.record_turn(KEY, **turn, prefilled=1000, cached=0, prefill_ms=4100.5)
    clock.now = 1010.0
    await store.record_turn(KEY, **turn, prefilled=40, cached=1001, prefill_ms=150.0)
    stats = store.stats[KEY]
    assert (stats.prefilled_tokens, stats.cached_tokens) == (1040, 1001)
    assert stats.last_turn == {"prefilled_tokens": 40, "cached_tokens": 1001,
                               "prefill_ms": 150.0, "at": 1010.0}
    clock.now = 1020.0
    await store.record_turn(KEY, **turn)  # an engine that says nothing of its cache
    assert (stats.prefilled_tokens, stats.cached_tokens) == (1040, 1001)
    assert stats.last_turn == {"prefilled_tokens": None, "cached_tokens": None,
                               "prefill_ms": None, "at": 1020.0}
    await store.aclose()
    db = sqlite3.connect(path)
    old = {"turns": 3, "chain_hits": 1, "misses": {}, "items_sent": 1, "items_full": 2,
           "tokens_sent": 3, "tokens_full": 4, "last_response_id": None,
           "created": 1000.0, "last_used": 9e9, "fronts": ["anthropic"]}
    with db:
        db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)",
                   ("old", "main", "m", json.dumps(old)))
    db.close()
    again = SessionStore(path, clock=clock)
    await again.open()
    assert again.stats[KEY].prefilled_tokens == 1040
    assert again.stats[KEY].last_turn["at"] == 1020.0
    older = again.stats[("old", "main", "m")]
    assert (older.turns, older.prefilled_tokens, older.cached_tokens) == (3, 0, 0)
    assert older.last_turn == {"prefilled_tokens": None, "cached_tokens": None,
                               "prefill_ms": None, "at": None}
    await again.aclose()


async def test_unchained_turns_are_not_misses_and_the_cached_share_is_measured(tmp_path):
    """A stateless upstream's turn is neither a hit nor a miss; the cached share counts
    only turns whose engine said what it prefilled (a cached count alone, LM Studio's,
    has no prompt to be a share of). A row an older lmsd wrote, with its turns as
    ``stateless_upstream`` misses, loads with them as unchained turns."""
    path, clock = tmp_path / "s.sqlite3", Clock()
    store = SessionStore(path, clock=clock)
    await store.open()
    turn = {"hit": False, "miss": None, "items_sent": 1, "items_full": 1,
            "tokens_sent": 10, "tokens_full": 10, "response_id": None}
    assert store.stats.get(KEY) is None
    await store.record_turn(KEY, **turn, unchained=True, prefilled=1000, cached=0)
    assert store.stats[KEY].cached_percent == 0
    await store.record_turn(KEY, **turn, unchained=True, prefilled=20, cached=2980)
    await store.record_turn(KEY, **turn, unchained=True, cached=5000)  # LM Studio's alone
    stats = store.stats[KEY]
    assert (stats.turns, stats.unchained_turns, stats.chain_hits, stats.misses) == \
        (3, 3, 0, {})
    assert stats.measured_prompt_tokens == 4000 and stats.cached_tokens == 7980
    assert stats.cached_percent == round(100 * 2980 / 4000)
    await store.record_turn(("t", "main", "m"), **turn)  # an engine that says nothing
    assert store.stats[("t", "main", "m")].cached_percent is None
    await store.aclose()
    db = sqlite3.connect(path)
    old = {"turns": 5, "chain_hits": 0, "misses": {"stateless_upstream": 4, "no_node": 1},
           "created": 1000.0, "last_used": 9e9}
    with db:
        db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)",
                   ("old", "main", "m", json.dumps(old)))
    db.close()
    again = SessionStore(path, clock=clock)
    await again.open()
    older = again.stats[("old", "main", "m")]
    assert (older.unchained_turns, older.misses) == (4, {"no_node": 1})
    assert again.stats[KEY].unchained_turns == 3
    await again.aclose()
