"""The last full upstream request of each recently active conversation, per upstream:
what a re-warm replays when the engine lost its cache (a model reload, an engine or an
lmsd restart). Bounded (``keep`` per upstream, most recent kept) and written through to
the session store's SQLite file, so it outlives an lmsd restart.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
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


class RecentRequests:
    def __init__(self, store: SessionStore | None, keep: int = 8) -> None:
        self.store = store
        self.keep = keep
        self._by_upstream: dict[str, dict[str, RecentRequest]] = {}

    async def load(self) -> None:
        """What an earlier lmsd remembered."""
        if self.store is None:
            return

        def read(db: sqlite3.Connection) -> list[str]:
            return [row[0] for row in db.execute(
                "SELECT data FROM recent_requests ORDER BY at")]

        for data in await self.store.run(read) or []:
            try:
                recent = RecentRequest(**json.loads(data))
            except (ValueError, TypeError):
                continue  # a row another version wrote: not worth a replay
            self._by_upstream.setdefault(recent.upstream, {})[recent.conversation] = recent

    def latest(self, upstream: str, n: int) -> list[RecentRequest]:
        """The ``n`` most recently active conversations' requests, most recent first."""
        recent = sorted(self._by_upstream.get(upstream, {}).values(), key=lambda r: -r.at)
        return recent[:n]

    def get(self, upstream: str, conversation: str) -> RecentRequest | None:
        return self._by_upstream.get(upstream, {}).get(conversation)

    async def remember(self, recent: RecentRequest) -> None:
        kept = self._by_upstream.setdefault(recent.upstream, {})
        kept[recent.conversation] = recent
        gone = sorted(kept.values(), key=lambda r: r.at)[:max(len(kept) - self.keep, 0)]
        for old in gone:
            del kept[old.conversation]
        if self.store is None:
            return
        data = json.dumps(asdict(recent))

        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO recent_requests VALUES (?, ?, ?, ?)",
                       (recent.upstream, recent.conversation, data, recent.at))
            db.executemany("DELETE FROM recent_requests WHERE upstream = ? AND "
                           "conversation = ?", [(o.upstream, o.conversation) for o in gone])

        await self.store.run(write)

    def forget(self, session: str | None = None) -> None:
        """``lmsd reset``: a reset conversation is not warmed again (the store's reset
        deletes the rows)."""
        for kept in self._by_upstream.values():
            for conversation in [c for c in kept if session is None or
                                 c.split("/", 1)[0] == session]:
                del kept[conversation]
