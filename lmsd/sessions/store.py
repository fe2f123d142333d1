"""The session store: chain nodes, per-session counters and config, kept in SQLite.

Lookups are served from memory (the hot path never waits on a thread); every change is
written through to SQLite by one long-lived writer thread, in order (``writer.py``), so
chains survive a daemon restart. A turn's writes are done before its response ends.
The store is bounded by a node count (least recently used go first) and a TTL.
A corrupt database is moved aside; an unwritable one leaves the store in memory only.
Either way a warning is logged and the daemon keeps serving. A write that fails later (a
full disk) leaves it in memory for a while: writes are tried again with back-off, and the
first that works writes back everything memory holds, so a restart loses nothing. The
state dir is 0700 and the database 0600 (``private.py``). The counters are ``stats.py``'s;
the database file (its schema, opening it, moving a corrupt one aside) is ``database.py``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import trio

from ..log import event, logger
from ..protocol.chain import ChainNode
from .config import SessionConfig
from .database import SCHEMA, open_database  # noqa: F401 (SCHEMA: importable here too)
from .stats import NO_TURN, SessionStats  # noqa: F401 (NO_TURN: importable here too)
from .writer import Job, Writer

SessionKey = tuple[str, str, str]  # (session id, agent id, upstream model)
MAX_SESSIONS = 5000  # per-session counters kept (least recently used go first)
#: After a failed write, seconds before writes are tried again (doubling up to the max).
RETRY_MIN, RETRY_MAX = 5.0, 300.0
T = TypeVar("T")

class SessionStore:
    def __init__(self, path: Path | None, *, max_nodes: int = 10_000,
                 ttl: float = 7 * 86400, clock: Callable[[], float] = time.time,
                 max_sessions: int = MAX_SESSIONS) -> None:
        self.path = path
        self.max_nodes = max_nodes
        self.max_sessions = max_sessions
        self.ttl = ttl
        self.clock = clock
        self.persistent = False
        self._db: sqlite3.Connection | None = None
        #: While writes fail (a full disk): when to try again (trio clock), and how long
        #: the wait after the next failure is.
        self._retry_at: float | None = None
        self.retry_wait = RETRY_MIN
        #: Writers of the rows other modules keep here (``recent.py``), called on recovery
        #: with a connection to write everything they hold in memory.
        self.resyncers: list[Callable[[], Callable[[sqlite3.Connection], None]]] = []
        self._writer: Writer | None = None
        self._failures = 0  # failed writes so far (``Job.epoch``)
        self._trying = False  # a write-back after failed writes is under way
        self._nodes: OrderedDict[str, tuple[SessionKey, ChainNode]] = OrderedDict()
        self._by_key: dict[SessionKey, dict[str, ChainNode]] = {}
        self.stats: dict[SessionKey, SessionStats] = {}
        self.configs: dict[str, SessionConfig] = {}

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        if self.path is not None:
            self._db = await trio.to_thread.run_sync(open_database, self.path, self.clock)
            self.persistent = self._db is not None
        if self._db is not None:
            self._writer = Writer(self._done)
        if self._db is not None:
            await self._run(self._load_sync)
        self._evict()

    def _load_sync(self, db: sqlite3.Connection) -> None:
        cutoff = self.clock() - self.ttl
        rows = db.execute(
            "SELECT response_id, session, agent, model, length, history, context, parent,"
            " created, last_used, upstream FROM nodes WHERE last_used >= ? ORDER BY last_used",
            (cutoff,)).fetchall()
        for (rid, session, agent, model, length, history, context, parent, created, used,
             upstream) in rows:
            node = ChainNode(rid, length, history, context, parent, created, used, upstream)
            self._insert((session, agent, model), node)
        for session, agent, model, data in db.execute(
                "SELECT session, agent, model, data FROM sessions"):
            self.stats[(session, agent, model)] = SessionStats.from_json(json.loads(data))
        self._evict_stats()
        for session, data in db.execute("SELECT session, data FROM session_config"):
            raw = json.loads(data)
            tools = raw.get("allowedTools")
            self.configs[session] = SessionConfig(
                raw.get("model"), frozenset(tools) if tools is not None else None)

    async def aclose(self) -> None:
        if self._db is not None and self._retry_at is not None:
            self._retry_at = trio.current_time()  # a last try to write memory back
            await self._run(lambda db: None)
        if self._db is not None and self._writer is not None:
            db, self._db = self._db, None
            writer, self._writer = self._writer, None
            writer.submit(Job(lambda db: db.close(), db))
            await writer.aclose()  # what was asked for is written first

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T | None:
        """Run ``fn(db)`` in a worker thread (None without a database): for the tables
        other modules keep beside the chains (``recent.py``)."""
        return await self._run(fn)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T | None:
        """Run ``fn(db)`` in the writer thread, after everything asked for before it.
        When it fails the store keeps to memory and tries again after ``retry_wait``
        (doubling); the first try that works writes memory back first (``_resync``)."""
        job = self._submit(fn)
        if job is None:
            return None
        with trio.CancelScope(shield=True):  # a write, once asked for, is waited for
            await job.finished.wait()
        if job.error is not None and not isinstance(job.error, sqlite3.Error):
            raise job.error
        return job.result if job.error is None else None

    def _submit(self, fn: Callable[[sqlite3.Connection], Any]) -> Job | None:
        """Hand ``fn`` to the writer without waiting (None: not written, memory holds
        it). After failed writes, the first job of a new try writes memory back."""
        db, writer = self._db, self._writer
        if db is None or writer is None:
            return None
        recovering = self._retry_at is not None
        if recovering:
            if trio.current_time() < self._retry_at:  # type: ignore[operator]
                return None  # memory holds it; written back on recovery
            # one write-back at a time: the jobs after it queue behind it, and fail with it
            self._retry_at, self._trying = None, True
            fn = self._resync(fn)
        return writer.submit(Job(fn, db, self._failures, recovering))

    def _done(self, job: Job) -> None:
        """A job's outcome, in the trio thread: a failure counted once (the jobs queued
        behind it fail alike and add nothing), a recovery announced."""
        if isinstance(job.error, sqlite3.Error):
            if job.epoch == self._failures:
                self._failed(job.error)
        elif job.error is not None:
            logger.error("store.internal_error error=%r", job.error)  # a bug of ours
        elif job.recovering:
            self._trying, self.retry_wait, self.persistent = False, RETRY_MIN, True
            event("store.recovered", **job.result[1],
                  effect="writes work again: what memory held is written back")
            job.result = job.result[0]

    def _failed(self, exc: sqlite3.Error) -> None:
        self._failures += 1
        first, self._trying = self._retry_at is None and not self._trying, False
        if not first:
            self.retry_wait = min(self.retry_wait * 2, RETRY_MAX)
        self._retry_at = trio.current_time() + self.retry_wait
        self.persistent = False
        if first:
            event("store.write_failed", level=30, error=str(exc),
                  effect=f"sessions kept in memory; writes tried again in "
                         f"{self.retry_wait:g} s, then written back")
        else:
            event("store.still_failing", level=30, error=str(exc),
                  retry_in_s=self.retry_wait)

    def _resync(self, then: Callable[[sqlite3.Connection], T]
                ) -> Callable[[sqlite3.Connection], tuple[T, dict[str, int]]]:
        """``then``, after making the database hold exactly what memory holds (in one
        transaction): the writes skipped while it failed, deletions included. The rows
        are taken here, in the trio thread, so that nothing changes them while the
        writer writes."""
        nodes = [(rid, *key, n.length, n.history, n.context, n.parent, n.created,
                  n.last_used, n.upstream) for rid, (key, n) in self._nodes.items()]
        stats = [(*key, json.dumps(asdict(s))) for key, s in self.stats.items()]
        configs = [(sid, json.dumps(c.to_json())) for sid, c in self.configs.items()]
        others = [take() for take in self.resyncers]

        def write(db: sqlite3.Connection) -> None:
            db.execute("BEGIN")
            try:
                db.execute("DELETE FROM nodes")
                db.executemany("INSERT INTO nodes (response_id, session, agent, model, length,"
                               " history, context, parent, created, last_used, upstream)"
                               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", nodes)
                db.execute("DELETE FROM sessions")
                db.executemany("INSERT INTO sessions VALUES (?, ?, ?, ?)", stats)
                db.execute("DELETE FROM session_config")
                db.executemany("INSERT INTO session_config VALUES (?, ?)", configs)
                for other in others:
                    other(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

        def both(db: sqlite3.Connection) -> tuple[T, dict[str, int]]:
            write(db)
            return then(db), {"nodes": len(nodes), "sessions": len(stats)}

        return both

    # -- chain nodes ------------------------------------------------------------------------

    def _insert(self, key: SessionKey, node: ChainNode) -> None:
        self._nodes[node.response_id] = (key, node)
        self._nodes.move_to_end(node.response_id)
        self._by_key.setdefault(key, {})[node.response_id] = node

    def _forget(self, response_id: str) -> None:
        key, _ = self._nodes.pop(response_id)
        nodes = self._by_key[key]
        del nodes[response_id]
        if not nodes:
            del self._by_key[key]

    def _evict(self) -> list[str]:
        """Drop expired nodes and the least recently used beyond ``max_nodes``."""
        cutoff = self.clock() - self.ttl
        gone = []
        while self._nodes:
            rid, (_, node) = next(iter(self._nodes.items()))
            if len(self._nodes) <= self.max_nodes and node.last_used >= cutoff:
                break
            self._forget(rid)
            gone.append(rid)
        return gone

    def nodes(self, key: SessionKey) -> list[ChainNode]:
        cutoff = self.clock() - self.ttl
        return [n for n in self._by_key.get(key, {}).values() if n.last_used >= cutoff]

    def holder(self, session: str, agent: str) -> str | None:
        """The upstream that holds the conversation's most recently used chain node:
        where its prefix most likely still is (after a restart, say)."""
        best: ChainNode | None = None
        for (s, a, _), nodes in self._by_key.items():
            if s == session and a == agent:
                for node in nodes.values():
                    if node.upstream and (best is None or node.last_used > best.last_used):
                        best = node
        return best.upstream if best else None

    def node_count(self) -> int:
        return len(self._nodes)

    async def add_node(self, key: SessionKey, node: ChainNode, *, wait: bool = True) -> None:
        """Keep ``node``; ``wait=False`` hands its write over without waiting (a later
        awaited write of the store's is done after it)."""
        node.created = node.last_used = self.clock()
        self._insert(key, node)
        gone = self._evict()

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO nodes (response_id, session, agent, model, length,"
                " history, context, parent, created, last_used, upstream)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (node.response_id, *key, node.length, node.history, node.context,
                 node.parent, node.created, node.last_used, node.upstream))
            db.executemany("DELETE FROM nodes WHERE response_id = ?", [(r,) for r in gone])

        await self._write(write, wait)

    async def touch(self, node: ChainNode, *, wait: bool = True) -> None:
        node.last_used = self.clock()
        if node.response_id in self._nodes:
            self._nodes.move_to_end(node.response_id)
        used, rid = node.last_used, node.response_id
        await self._write(lambda db: db.execute(
            "UPDATE nodes SET last_used = ? WHERE response_id = ?", (used, rid)), wait)

    async def _write(self, fn: Callable[[sqlite3.Connection], Any], wait: bool) -> None:
        if wait:
            await self._run(fn)
        else:
            self._submit(fn)

    async def drop_node(self, response_id: str) -> None:
        if response_id in self._nodes:
            self._forget(response_id)
        await self._run(lambda db: db.execute(
            "DELETE FROM nodes WHERE response_id = ?", (response_id,)))

    # -- counters ---------------------------------------------------------------------------

    async def record_turn(self, key: SessionKey, *, hit: bool, miss: str | None,
                          unchained: bool = False, items_sent: int, items_full: int,
                          tokens_sent: int, tokens_full: int, response_id: str | None,
                          front: str = "anthropic", repaired: int = 0,
                          upstream: str | None = None, prefilled: int | None = None,
                          cached: int | None = None, prefill_ms: float | None = None
                          ) -> None:
        """Count one turn: a chain ``hit``, a ``miss`` (why), or ``unchained`` (to a
        stateless upstream); ``prefilled``, ``cached`` and ``prefill_ms`` are the engine's
        (None: it did not say)."""
        now = self.clock()
        stats = self.stats.setdefault(key, SessionStats(created=now))
        stats.turns += 1
        if hit:
            stats.chain_hits += 1
        if unchained:
            stats.unchained_turns += 1
        elif miss:
            stats.misses[miss] = stats.misses.get(miss, 0) + 1
        stats.items_sent += items_sent
        stats.items_full += items_full
        stats.tokens_sent += tokens_sent
        stats.tokens_full += tokens_full
        stats.last_response_id = response_id or stats.last_response_id
        stats.last_used = now
        stats.repaired_tool_calls += repaired
        stats.prefilled_tokens += prefilled or 0
        stats.cached_tokens += cached or 0
        if prefilled is not None:
            stats.measured_prompt_tokens += prefilled + (cached or 0)
        stats.last_turn = {"prefilled_tokens": prefilled, "cached_tokens": cached,
                           "prefill_ms": prefill_ms, "at": now}
        if front not in stats.fronts:
            stats.fronts.append(front)
        if upstream:
            if stats.upstream and stats.upstream != upstream:
                stats.upstream_moves += 1
            stats.upstream = upstream
        data = json.dumps(asdict(stats))
        gone = self._evict_stats()

        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?)", (*key, data))
            db.executemany("DELETE FROM sessions WHERE session = ? AND agent = ? AND model = ?",
                           gone)

        await self._run(write)

    def _evict_stats(self) -> list[SessionKey]:
        """Counters expire like nodes (TTL) and are bounded in number (LRU)."""
        cutoff = self.clock() - self.ttl
        gone = [k for k, v in self.stats.items() if v.last_used < cutoff]
        excess = len(self.stats) - len(gone) - self.max_sessions
        if excess > 0:
            alive = sorted((v.last_used, k) for k, v in self.stats.items() if k not in gone)
            gone += [k for _, k in alive[:excess]]
        for key in gone:
            del self.stats[key]
        return gone

    # -- per-session config -----------------------------------------------------------------

    def config(self, *session_ids: str | None) -> SessionConfig:
        for sid in session_ids:
            if sid and sid in self.configs:
                return self.configs[sid]
        return SessionConfig()

    async def set_config(self, session: str, config: SessionConfig) -> None:
        self.configs[session] = config
        data = json.dumps(config.to_json())
        await self._run(lambda db: db.execute(
            "INSERT OR REPLACE INTO session_config VALUES (?, ?)", (session, data)))

    # -- reset ------------------------------------------------------------------------------

    async def reset(self, session: str | None = None) -> int:
        """Forget the chains and counters of one session, or of all; return nodes dropped."""
        keys = [k for k in self._by_key if session is None or k[0] == session]
        dropped = [rid for k in keys for rid in list(self._by_key[k])]
        for rid in dropped:
            self._forget(rid)
        for k in [k for k in self.stats if session is None or k[0] == session]:
            del self.stats[k]

        def write(db: sqlite3.Connection) -> None:
            if session is None:
                db.execute("DELETE FROM nodes")
                db.execute("DELETE FROM sessions")
                db.execute("DELETE FROM recent_requests")
            else:
                db.execute("DELETE FROM nodes WHERE session = ?", (session,))
                db.execute("DELETE FROM sessions WHERE session = ?", (session,))
                db.execute("DELETE FROM recent_requests WHERE substr(conversation, 1, ?) "
                           "= ?", (len(session) + 1, f"{session}/"))

        await self._run(write)
        return len(dropped)

    def summary(self) -> dict[str, Any]:
        return {"nodes": len(self._nodes), "sessions": len(self.stats),
                "persistent": self.persistent, "path": str(self.path) if self.path else None}
