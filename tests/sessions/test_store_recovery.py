"""A full disk, then space again: the store writes back what it kept in memory meanwhile,
so a restart loses nothing (issue 22); and what it writes is private (0700/0600)."""

from __future__ import annotations

import os
import sqlite3
import stat

from lmsd.protocol.chain import ChainNode
from lmsd.sessions.config import SessionConfig
from lmsd.sessions.recent import RecentRequest, RecentRequests
from lmsd.sessions.store import SessionStore

KEY = ("s", "main", "m")


def node(rid: str) -> ChainNode:
    return ChainNode(rid, 2, f"h-{rid}", "ctx", upstream="u")


class FullDisk:
    """The store's connection, refusing every statement while ``full``."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.full = True
        self.refused = 0

    def __getattr__(self, name: str):
        attr = getattr(self.db, name)
        if name in ("execute", "executemany", "executescript") and self.full:
            def refuse(*args, **kwargs):
                self.refused += 1
                raise sqlite3.OperationalError("database or disk is full")
            return refuse
        return attr


async def test_writes_made_while_the_disk_was_full_survive_a_restart(tmp_path):
    path = tmp_path / "state" / "sessions.sqlite3"
    store = SessionStore(path)
    await store.open()
    recent = RecentRequests(store)
    await store.add_node(KEY, node("before"))
    await store.add_node(KEY, node("dropped"))
    disk = FullDisk(store._db)  # type: ignore[arg-type]
    store._db = disk  # type: ignore[assignment]

    await store.add_node(KEY, node("during-1"))  # fails: memory only
    assert not store.persistent and disk.refused
    refused = disk.refused
    await store.touch(store.nodes(KEY)[0])  # within the back-off: not even tried
    assert disk.refused == refused
    store.retry_wait = 0.0  # no waiting in a test; the back-off itself is not the point
    store._retry_at = 0.0
    await store.add_node(KEY, node("during-2"))  # tried again: still full
    await store.drop_node("dropped")
    await store.record_turn(KEY, hit=False, miss="no_node", items_sent=1, items_full=1,
                            tokens_sent=5, tokens_full=5, response_id="during-2")
    await store.set_config("s", SessionConfig("m2", None))
    recent.note(RecentRequest("u", "s/main", "/v1/chat/completions", {"x": 1}, 1.0))
    await recent.flush()
    assert not store.persistent

    disk.full = False  # space again
    await store.add_node(KEY, node("after"))
    assert store.persistent
    await store.aclose()

    again = SessionStore(path)
    await again.open()
    assert sorted(n.response_id for n in again.nodes(KEY)) == [
        "after", "before", "during-1", "during-2"]
    assert again.stats[KEY].turns == 1 and again.configs["s"].model == "m2"
    kept = RecentRequests(again)
    await kept.load()
    assert kept.get("u", "s/main") is not None
    await again.aclose()


async def test_a_store_closed_while_writes_fail_writes_back_on_close(tmp_path):
    path = tmp_path / "sessions.sqlite3"
    store = SessionStore(path)
    await store.open()
    disk = FullDisk(store._db)  # type: ignore[arg-type]
    store._db = disk  # type: ignore[assignment]
    await store.add_node(KEY, node("during"))
    disk.full = False  # space again, but no more writes before the daemon stops
    await store.aclose()
    again = SessionStore(path)
    await again.open()
    assert [n.response_id for n in again.nodes(KEY)] == ["during"]
    await again.aclose()


async def test_the_state_dir_and_the_store_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        state = tmp_path / "state"
        path = state / "sessions.sqlite3"
        store = SessionStore(path)
        await store.open()
        await store.add_node(KEY, node("r"))
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [state, *state.iterdir()]}
        await store.aclose()
    finally:
        os.umask(old)
    assert modes.pop("state") == 0o700
    assert "sessions.sqlite3" in modes and "sessions.sqlite3-wal" in modes
    assert modes == dict.fromkeys(modes, 0o600)


async def test_an_existing_readable_store_is_made_private(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    path = state / "sessions.sqlite3"
    sqlite3.connect(path).close()
    os.chmod(state, 0o755)
    os.chmod(path, 0o644)
    store = SessionStore(path)
    await store.open()
    await store.aclose()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_lmsd_serve_runs_under_a_private_umask(monkeypatch, tmp_path):
    """Defense in depth: whatever the daemon writes is created for the user alone."""
    import lmsd.cli

    seen = []

    def run(*args):
        mask = os.umask(0o022)
        os.umask(mask)
        seen.append(mask)

    monkeypatch.setattr(lmsd.cli.trio, "run", run)
    old = os.umask(0o022)
    try:
        assert lmsd.cli.main(["serve", "--state-dir", str(tmp_path)]) == 0
    finally:
        os.umask(old)
    assert seen == [0o077]
