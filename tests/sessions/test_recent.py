"""The last request of each recent conversation, per upstream (what a re-warm replays):
one upstream per conversation, bounded, written by ``flush`` and read back after a
restart."""

from __future__ import annotations

import sqlite3

from lmsd.sessions.recent import RecentRequest, RecentRequests
from lmsd.sessions.store import SessionStore

A, B = "http://a:1234", "http://b:1234"


def request(upstream: str, conversation: str, at: float, text: str = "hi") -> RecentRequest:
    return RecentRequest(upstream, conversation, "/v1/chat/completions",
                         {"messages": [{"role": "user", "content": text}]}, at)


def conversations(recent: RecentRequests, upstream: str, n: int = 99,
                  since: float = 0.0) -> list[str]:
    return [r.conversation for r in recent.latest(upstream, n, since)]


def test_latest_is_most_recent_first_bounded_by_n_and_since():
    recent = RecentRequests(None)
    for k, at in enumerate([10.0, 30.0, 20.0]):
        recent.note(request(A, f"s{k}/main", at))
    assert conversations(recent, A) == ["s1/main", "s2/main", "s0/main"]
    assert conversations(recent, A, n=2) == ["s1/main", "s2/main"]
    assert conversations(recent, A, since=20.0) == ["s1/main", "s2/main"]
    assert conversations(recent, B) == []


def test_a_conversation_lives_on_the_upstream_its_last_request_went_to():
    recent = RecentRequests(None)
    recent.note(request(A, "s/main", 1.0, "first"))
    assert recent.where("s/main") == A
    recent.note(request(B, "s/main", 2.0, "moved"))
    assert recent.where("s/main") == B
    assert recent.get(A, "s/main") is None  # A must not warm it again
    assert recent.get(B, "s/main").body["messages"][0]["content"] == "moved"
    recent.note(request(B, "s/main", 3.0, "again"))  # a newer request replaces the last
    assert [r.body["messages"][0]["content"] for r in recent.latest(B, 9)] == ["again"]
    assert recent.where("s/other") is None


def test_each_upstream_keeps_its_most_recent_few():
    recent = RecentRequests(None, keep=2)
    for k in range(4):
        recent.note(request(A, f"s{k}/main", float(k)))
    recent.note(request(B, "t/main", 0.0))
    assert conversations(recent, A) == ["s3/main", "s2/main"]
    assert conversations(recent, B) == ["t/main"]  # bounded per upstream


def test_forget_one_session_or_all():
    recent = RecentRequests(None)
    for conversation in ("s/main", "s/agent-1", "sx/main", "t/main"):
        recent.note(request(A, conversation, 1.0))
    recent.forget("s")  # its agents too, not a session whose name starts the same
    assert sorted(conversations(recent, A)) == ["sx/main", "t/main"]
    assert recent.unwritten == 2  # what was noted and not forgotten
    recent.forget()
    assert conversations(recent, A) == [] and recent.unwritten == 0


async def test_flushed_requests_survive_a_restart_where_they_were(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = SessionStore(path)
    await store.open()
    recent = RecentRequests(store, keep=2)
    recent.note(request(A, "s/main", 1.0))
    recent.note(request(A, "t/main", 2.0))
    recent.note(request(B, "s/main", 3.0))  # moved: A's row goes
    recent.note(request(A, "u/main", 4.0))
    assert recent.unwritten == 4
    await recent.flush()
    assert recent.unwritten == 0
    await recent.flush()  # nothing changed: nothing to write
    await store.aclose()

    again_store = SessionStore(path)
    await again_store.open()
    again = RecentRequests(again_store)
    await again.load()
    await again.load()  # read once
    assert conversations(again, A) == ["u/main", "t/main"]
    assert conversations(again, B) == ["s/main"]
    assert again.get(B, "s/main") == request(B, "s/main", 3.0)
    await again_store.aclose()


async def test_a_row_another_version_wrote_is_skipped(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = SessionStore(path)
    await store.open()
    recent = RecentRequests(store)
    recent.note(request(A, "s/main", 1.0))
    await recent.flush()
    await store.run(lambda db: db.execute(
        "INSERT INTO recent_requests VALUES (?, ?, ?, ?)",
        (A, "t/main", '{"upstream": "x", "unknown_field": 1}', 2.0)))
    await store.run(lambda db: db.execute(
        "INSERT INTO recent_requests VALUES (?, ?, ?, ?)", (A, "u/main", "not json", 3.0)))
    await store.aclose()
    again_store = SessionStore(path)
    await again_store.open()
    again = RecentRequests(again_store)
    await again.load()
    assert conversations(again, A) == ["s/main"]
    await again_store.aclose()


async def test_the_resync_writer_rewrites_everything_kept(tmp_path):
    """After failed writes (a full disk) the store asks each keeper for a writer of all it
    holds: rows it no longer holds go, pending changes are then written."""
    store = SessionStore(tmp_path / "s.sqlite3")
    await store.open()
    recent = RecentRequests(store)
    recent.note(request(A, "gone/main", 1.0))
    await recent.flush()
    recent.forget("gone")
    recent.note(request(B, "kept/main", 2.0))
    [resync] = store.resyncers
    write = resync()
    assert recent.unwritten == 0  # taken by the writer

    def rows(db: sqlite3.Connection) -> list[tuple[str, str]]:
        return list(db.execute("SELECT upstream, conversation FROM recent_requests"))

    await store.run(write)
    assert await store.run(rows) == [(B, "kept/main")]
    await store.aclose()


async def test_without_a_store_nothing_is_read_or_written():
    recent = RecentRequests(None)
    await recent.load()
    recent.note(request(A, "s/main", 1.0))
    await recent.flush()
    assert conversations(recent, A) == ["s/main"]
