"""The store's one writer thread (``sessions/writer.py``): the writes of a turn handed over
without waiting run in order and are in SQLite when the awaited last one returns (so a
``kill -9`` right after a turn keeps its chain node), a failure is counted once for the
writes queued behind it, and closing the store writes what was queued first."""

from __future__ import annotations

import sqlite3
import threading

from lmsd.protocol.anthropic.request import validate_messages_request
from lmsd.protocol.chain import ChainNode
from lmsd.sessions.store import RETRY_MIN, SessionStore
from lmsd.sessions.turns import Outcome, remember_turn
from tests.sessions.test_store_recovery import FullDisk
from tests.support.pivot import answer, plan

KEY = ("s", "main", "m")


def node(rid: str) -> ChainNode:
    return ChainNode(rid, 2, f"h-{rid}", "ctx", upstream="u")


def rows(path, sql: str) -> list[tuple]:
    """What another process would read now (a second connection, the store still open)."""
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


async def test_writes_handed_over_run_in_order_before_the_awaited_one_returns(tmp_path):
    path = tmp_path / "sessions.sqlite3"
    store = SessionStore(path)
    await store.open()
    for n in range(20):
        await store.add_node(KEY, node(f"r{n}"), wait=False)
        if n % 2:
            await store.drop_node(f"r{n - 1}")  # awaited, in between
    await store.record_turn(KEY, hit=False, miss="no_node", items_sent=1, items_full=1,
                            tokens_sent=1, tokens_full=1, response_id="r19")
    kept = {rid for (rid,) in rows(path, "SELECT response_id FROM nodes")}
    assert kept == {f"r{n}" for n in range(20) if n % 2}
    assert rows(path, "SELECT session FROM sessions") == [("s",)]
    # one long-lived thread did all of it, not the trio thread nor one per call
    names = {await store.run(lambda db: threading.current_thread().name) for _ in range(3)}
    assert names == {"lmsd-store-writer"}
    await store.aclose()


async def test_a_turns_chain_node_is_in_sqlite_when_remember_turn_returns(tmp_path):
    path = tmp_path / "sessions.sqlite3"
    store = SessionStore(path)
    await store.open()
    req = {"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user",
                                                                "content": "hi"}]}
    await remember_turn(store, KEY, plan(validate_messages_request(req)), Outcome(
        "msg_1", "anthropic", "u", chained=False, stale=False,
        answer=answer([{"type": "text", "text": "hello"}]), response_id="resp_1"))
    assert rows(path, "SELECT response_id FROM nodes") == [("resp_1",)]
    await store.aclose()


async def test_a_full_disk_is_counted_once_for_the_writes_queued_behind_it(tmp_path, caplog):
    store = SessionStore(tmp_path / "sessions.sqlite3")
    await store.open()
    disk = FullDisk(store._db)  # type: ignore[arg-type]
    store._db = disk  # type: ignore[assignment]
    for n in range(5):
        await store.add_node(KEY, node(f"r{n}"), wait=False)
    await store.touch(store.nodes(KEY)[0])
    assert disk.refused == 6 and not store.persistent
    assert store.retry_wait == RETRY_MIN  # one failure, not six doublings
    assert [r.msg for r in caplog.records].count("store.write_failed") <= 1
    disk.full = False
    await store.aclose()


async def test_closing_writes_what_was_handed_over_first(tmp_path):
    path = tmp_path / "sessions.sqlite3"
    store = SessionStore(path)
    await store.open()
    for n in range(10):
        await store.add_node(KEY, node(f"r{n}"), wait=False)
    await store.aclose()
    assert len(rows(path, "SELECT response_id FROM nodes")) == 10


async def test_after_a_streamed_turn_the_node_is_already_on_disk(client, lmsd):
    """Through the daemon: the stream ends only once the chain node is written, as before
    the writer existed (another connection sees it while lmsd still runs)."""
    async with client.messages.stream(model="claude-x", max_tokens=20,
                                      messages=[{"role": "user", "content": "hi"}]) as stream:
        message = await stream.get_final_message()
    assert message.stop_reason == "end_turn"
    path = f"{lmsd.settings.state_dir}/sessions.sqlite3"
    assert len(rows(path, "SELECT response_id FROM nodes")) == 1
