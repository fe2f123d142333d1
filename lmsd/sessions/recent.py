"""The last full upstream request of each recently active conversation, per upstream:
what a re-warm replays when the engine lost its cache (a model reload, an engine or an
lmsd restart). A conversation lives on one upstream, the one its last request went to:
noting it on one forgets it on the others (after a failover or a move, the upstream it
left must not warm it again: a full cold prefill on a box that no longer serves it).
Bounded (``keep`` per upstream, most recent kept) and written to the session store's
SQLite file by the keeper within a second (never on a turn's path), so it outlives an
lmsd restart.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from .store import SessionStore


@dataclass
class RecentRequest:
    """One conversation's last request to one upstream, as sent (the full history)."""

    upstream: str
    conversation: str  # session/agent
    path: str  # the endpoint it went to (/v1/chat/completions, ...)
    body: dict[str, Any] = field(repr=False)
    at: float  # wall clock
    slot: int | None = None  # the engine slot it ran on, if lmsd chose one
    file: str | None = None  # the slot file its state was last saved to


def _json(recent: RecentRequest) -> str:
    """The row's JSON. Not ``asdict``: it copies the body (a whole prompt, thousands of
    nodes) item by item before the encoder reads it, holding the GIL for milliseconds."""
    return json.dumps({f.name: getattr(recent, f.name) for f in fields(recent)})


class RecentRequests:
    def __init__(self, store: SessionStore | None, keep: int = 8) -> None:
        self.store = store
        self.keep = keep
        self._by_upstream: dict[str, dict[str, RecentRequest]] = {}
        self._loaded = False
        #: Changed since the last flush (None: deleted).
        self._pending: dict[tuple[str, str], RecentRequest | None] = {}
        if store is not None:
            store.resyncers.append(self._resync)

    async def load(self) -> None:
        """What an earlier lmsd remembered (read once)."""
        if self.store is None or self._loaded:
            return
        self._loaded = True

        def read(db: sqlite3.Connection) -> list[str]:
            return [row[0] for row in db.execute(
                "SELECT data FROM recent_requests ORDER BY at")]

        for data in await self.store.run(read) or []:
            try:
                recent = RecentRequest(**json.loads(data))
            except (ValueError, TypeError):
                continue  # a row another version wrote: not worth a replay
            self._place(recent)  # oldest first: a conversation stays where it went last

    def latest(self, upstream: str, n: int, since: float = 0.0) -> list[RecentRequest]:
        """The ``n`` most recently active conversations' requests (active at wall-clock
        ``since`` or later), most recent first."""
        recent = sorted((r for r in self._by_upstream.get(upstream, {}).values()
                         if r.at >= since), key=lambda r: -r.at)
        return recent[:n]

    def get(self, upstream: str, conversation: str) -> RecentRequest | None:
        return self._by_upstream.get(upstream, {}).get(conversation)

    def where(self, conversation: str) -> str | None:
        """The upstream ``conversation`` lives on (its last request went there), if kept."""
        return next((upstream for upstream, kept in self._by_upstream.items()
                     if conversation in kept), None)

    def note(self, recent: RecentRequest) -> None:
        """Remember ``recent`` (in memory now; ``flush`` writes it), and forget the
        conversation on every other upstream: it moved."""
        kept = self._place(recent)
        self._pending[(recent.upstream, recent.conversation)] = recent
        for old in sorted(kept.values(), key=lambda r: r.at)[:max(len(kept) - self.keep, 0)]:
            del kept[old.conversation]
            self._pending[(old.upstream, old.conversation)] = None

    def _place(self, recent: RecentRequest) -> dict[str, RecentRequest]:
        """``recent`` is its conversation's only request kept: the upstream it left (if
        any) no longer has it. Returns that upstream's requests."""
        for upstream, others in self._by_upstream.items():
            if upstream != recent.upstream and others.pop(recent.conversation, None):
                self._pending[(upstream, recent.conversation)] = None
        kept = self._by_upstream.setdefault(recent.upstream, {})
        kept[recent.conversation] = recent
        return kept

    @property
    def unwritten(self) -> int:
        """Changes not in the store yet."""
        return len(self._pending)

    async def flush(self) -> None:
        """Write what changed since the last flush (the JSON is made in the worker
        thread: a body is a whole prompt, hundreds of KB)."""
        pending, self._pending = self._pending, {}
        if not pending or self.store is None:
            return

        def write(db: sqlite3.Connection) -> None:
            for (upstream, conversation), recent in pending.items():
                if recent is None:
                    db.execute("DELETE FROM recent_requests WHERE upstream = ? AND "
                               "conversation = ?", (upstream, conversation))
                else:
                    db.execute("INSERT OR REPLACE INTO recent_requests VALUES (?, ?, ?, ?)",
                               (upstream, conversation, _json(recent),
                                recent.at))

        await self.store.run(write)

    def _resync(self) -> Callable[[sqlite3.Connection], None]:
        """The store recovers from failed writes (a full disk): every request kept, taken
        now, for the writer it returns (the JSON is made in the worker thread)."""
        kept = [r for by in self._by_upstream.values() for r in by.values()]
        self._pending = {}

        def write(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM recent_requests")
            db.executemany("INSERT OR REPLACE INTO recent_requests VALUES (?, ?, ?, ?)",
                           [(r.upstream, r.conversation, _json(r), r.at)
                            for r in kept])

        return write

    def forget(self, session: str | None = None) -> None:
        """``lmsd reset``: a reset conversation is not warmed again (the store's reset
        deletes the rows)."""
        for kept in self._by_upstream.values():
            for conversation in [c for c in kept if session is None or
                                 c.split("/", 1)[0] == session]:
                del kept[conversation]
        self._pending = {k: v for k, v in self._pending.items()
                         if session is not None and k[1].split("/", 1)[0] != session}
