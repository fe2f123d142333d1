"""The answers kept for ``previous_response_id``: chains, bounds, scopes, persistence."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from lmsd.protocol.failures import ResponseNotFound, UnknownResponse
from lmsd.sessions.responses import ResponseHistory
from lmsd.sessions.store import SessionStore
from tests.sessions.test_store import Clock


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": text}


def answer(rid: str, text: str) -> dict[str, Any]:
    return {"id": rid, "object": "response", "status": "completed", "output": [
        {"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": text}]}]}


def texts(items: list[dict[str, Any]]) -> list[str]:
    return [i["content"] if isinstance(i["content"], str) else i["content"][0]["text"]
            for i in items]


def conversation(history: ResponseHistory, n: int, scope: str = "", prefix: str = "r"
                 ) -> list[str]:
    """``n`` turns, each following the one before; their ids."""
    ids: list[str] = []
    for k in range(n):
        rid = f"{prefix}{k}"
        history.add(scope, rid, parent=ids[-1] if ids else None, session="s",
                    input=[user(f"q{k}")], response=answer(rid, f"a{k}"))
        ids.append(rid)
    return ids


def test_a_chain_expands_to_every_input_and_output_in_order():
    history = ResponseHistory(None)
    ids = conversation(history, 3)
    items, session = history.history("", ids[-1])
    assert texts(items) == ["q0", "a0", "q1", "a1", "q2", "a2"]
    assert session == "s"
    assert history.response("", "r1")["output"][0]["content"][0]["text"] == "a1"


def test_scopes_are_apart():
    history = ResponseHistory(None)
    conversation(history, 1, scope="laptop")
    with pytest.raises(UnknownResponse, match="'r0' not found"):
        history.history("desktop", "r0")
    with pytest.raises(UnknownResponse):
        history.history("", "r0")
    with pytest.raises(ResponseNotFound):
        history.response("desktop", "r0")


def test_the_count_bound_evicts_whole_old_conversations_newest_step_first():
    """Eviction never leaves a step whose ancestors are gone: a chain loses its newest
    steps first (an older id still expands), and the conversation in use stays."""
    history = ResponseHistory(None, max_count=5)
    old = conversation(history, 3, prefix="old")
    new = conversation(history, 3, prefix="new")  # 6 steps: one must go
    assert len(history) == 5
    assert "old2" not in {k[1] for k in history._steps}  # the old chain's newest
    assert texts(history.history("", old[1])[0]) == ["q0", "a0", "q1", "a1"]
    history.history("", new[-1])  # using a chain keeps it whole
    conversation(history, 2, prefix="more")
    assert texts(history.history("", new[-1])[0])[-1] == "a2"


def test_the_byte_bound_and_an_oversized_step():
    history = ResponseHistory(None, max_bytes=600)
    conversation(history, 3)
    assert history.bytes <= 600 and 0 < len(history) < 3
    history.add("", "huge", parent=None, session="s", input=[user("x" * 1000)],
                response=answer("huge", "y"))
    with pytest.raises(UnknownResponse):
        history.history("", "huge")


def test_ttl_expires_and_a_broken_chain_is_not_found():
    clock = Clock()
    history = ResponseHistory(None, ttl=100, clock=clock)
    ids = conversation(history, 2)
    clock.now += 50
    history.history("", ids[-1])  # used: the whole chain is fresh again
    clock.now += 80
    assert texts(history.history("", ids[-1])[0])[-1] == "a1"
    clock.now += 101
    with pytest.raises(UnknownResponse):
        history.history("", ids[-1])


async def test_kept_across_a_restart_with_the_lru_order(tmp_path):
    clock = Clock()
    store = SessionStore(tmp_path / "s.sqlite3", clock=clock)
    await store.open()
    history = ResponseHistory(store, max_count=10, clock=clock)
    ids = conversation(history, 3, scope="laptop")
    other = conversation(history, 1, prefix="x")
    await history.flush()
    history.history("laptop", ids[-1])  # touched after the first write
    await history.flush()
    await store.aclose()

    store = SessionStore(tmp_path / "s.sqlite3", clock=clock)
    await store.open()
    again = ResponseHistory(store, max_count=2, clock=clock)
    await again.load()
    # the bound applies on load: the most recently used two, the chain's oldest first
    assert [k[1] for k in again._steps] == ["r1", "r0"]
    assert texts(again.history("laptop", "r1")[0]) == ["q0", "a0", "q1", "a1"]
    with pytest.raises(UnknownResponse):
        again.history("", other[0])
    await again.flush()  # what the bound dropped on load is deleted from disk too
    assert await store.run(lambda db: db.execute(
        "SELECT response_id FROM responses ORDER BY last_used").fetchall()) == \
        [("r1",), ("r0",)]
    await store.aclose()


async def test_a_row_another_version_wrote_is_skipped(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = SessionStore(path)
    await store.open()
    history = ResponseHistory(store)
    conversation(history, 1)
    await history.flush()
    await store.aclose()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO responses VALUES ('', 'bad', NULL, 's', '{\"x\": 1}', 1e12)")
    store = SessionStore(path)
    await store.open()
    again = ResponseHistory(store)
    await again.load()
    assert texts(again.history("", "r0")[0]) == ["q0", "a0"]
    with pytest.raises(UnknownResponse):
        again.history("", "bad")
    await store.aclose()


async def test_answers_kept_while_the_disk_was_full_are_written_back(tmp_path):
    from tests.sessions.test_store_recovery import FullDisk

    path = tmp_path / "s.sqlite3"
    store = SessionStore(path)
    await store.open()
    history = ResponseHistory(store)
    conversation(history, 1, prefix="before")
    await history.flush()
    disk = FullDisk(store._db)  # type: ignore[arg-type]
    store._db = disk  # type: ignore[assignment]
    conversation(history, 2, prefix="during")
    await history.flush()  # refused: kept in memory
    assert not store.persistent and disk.refused
    disk.full = False
    store._retry_at = 0.0
    await store.run(lambda db: None)  # the store's next write: everything written back
    assert store.persistent
    await store.aclose()

    store = SessionStore(path)
    await store.open()
    again = ResponseHistory(store)
    await again.load()
    assert texts(again.history("", "during1")[0]) == ["q0", "a0", "q1", "a1"]
    assert texts(again.history("", "before0")[0]) == ["q0", "a0"]
    await store.aclose()


def test_branches_expand_apart_and_a_follow_up_runs_where_the_answer_it_follows_ran():
    """Two answers that followed the same one (a client that retried, or forked): each
    expands to its own branch, in the session of the answer followed."""
    history = ResponseHistory(None)
    [root] = conversation(history, 1)
    for branch in ("left", "right"):
        history.add("", branch, parent=root, session="other", input=[user(f"q-{branch}")],
                    response=answer(branch, f"a-{branch}"))
    assert texts(history.history("", "left")[0]) == ["q0", "a0", "q-left", "a-left"]
    assert texts(history.history("", "right")[0]) == ["q0", "a0", "q-right", "a-right"]
    assert history.history("", "right")[1] == "other"
    assert history.history("", root)[1] == "s"


def test_an_id_added_again_replaces_the_step_and_its_bytes():
    history = ResponseHistory(None)
    conversation(history, 1)
    before = history.bytes
    history.add("", "r0", parent=None, session="s", input=[user("q0, longer this time")],
                response=answer("r0", "a0"))
    assert len(history) == 1
    assert history.bytes == before + len(", longer this time")
    assert texts(history.history("", "r0")[0]) == ["q0, longer this time", "a0"]


def test_a_chain_that_loops_is_not_found_rather_than_followed_forever():
    history = ResponseHistory(None)
    history.add("", "a", parent="b", session="s", input=[user("qa")],
                response=answer("a", "aa"))
    history.add("", "b", parent="a", session="s", input=[user("qb")],
                response=answer("b", "ab"))
    with pytest.raises(UnknownResponse):
        history.history("", "a")
    assert history.response("", "a")["id"] == "a"  # the step itself is still there
