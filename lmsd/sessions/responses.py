"""The answers lmsd returned on ``/v1/responses`` with ``store`` true (OpenAI's default),
so that a generic client's ``previous_response_id`` expands to the whole conversation
(``protocol/responses/previous.py``).

Each answer is kept as its own step: the request's new input items, the response object
it returned (its output items), and the id it followed. A conversation is the chain of
its steps, so memory and disk grow with the conversation, not with its square. Keys are
``(client, id)``: a keyed client expands only its own ids (another's is "not found").

Bounded by a count (``session_max_nodes``), a byte size (``MAX_BYTES``) and a TTL
(``session_ttl``), least recently used first. Using a step touches its whole chain,
the ancestors last, so eviction takes a conversation from its newest end and never
leaves a step whose ancestors are gone. Lookups are served from memory; the keeper-style
``run`` loop writes changes to the session store's SQLite file within a second (never on
a turn's path), so ids survive an lmsd restart.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from ..log import event
from ..protocol.failures import ResponseNotFound, UnknownResponse
from .store import SessionStore

Key = tuple[str, str]  # (client scope, response id)
MAX_BYTES = 64 * 1024 * 1024  # the steps' JSON, in memory and on disk
FLUSH_EVERY = 1.0  # seconds between writes of what changed


@dataclass
class Step:
    """One returned answer: what its request added, and the response object itself."""

    scope: str  # the client's name ('' for an anonymous one)
    response_id: str
    parent: str | None  # the previous_response_id it followed
    session: str  # the session it ran in (a follow-up without one runs there too)
    input: list[dict[str, Any]] = field(repr=False)
    response: dict[str, Any] = field(repr=False)
    size: int = 0
    last_used: float = 0.0

    @property
    def key(self) -> Key:
        return (self.scope, self.response_id)

    def data(self) -> str:
        return json.dumps({"input": self.input, "response": self.response})


class ResponseHistory:
    def __init__(self, store: SessionStore | None, *, max_count: int = 10_000,
                 max_bytes: int = MAX_BYTES, ttl: float = 7 * 86400,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.max_count, self.max_bytes, self.ttl, self.clock = max_count, max_bytes, ttl, clock
        self._steps: OrderedDict[Key, Step] = OrderedDict()  # least recently used first
        self.bytes = 0
        self._last = 0.0
        #: Changed since the last flush: written whole, touched (last_used), or deleted.
        self._new: set[Key] = set()
        self._touched: set[Key] = set()
        self._gone: set[Key] = set()
        if store is not None:
            store.resyncers.append(self._resync)

    # -- the hot path (memory only) ---------------------------------------------------------

    def history(self, scope: str, response_id: str) -> tuple[list[dict[str, Any]], str]:
        """The items before a request that follows ``response_id`` (every step's input and
        output, oldest first) and the session it ran in; ``UnknownResponse`` when lmsd
        does not hold it, or a step of its chain, for this client."""
        chain = self._chain(scope, response_id)
        if chain is None:
            raise UnknownResponse(response_id)
        self._touch(chain)
        items: list[dict[str, Any]] = []
        for step in reversed(chain):
            items += step.input
            items += step.response.get("output") or []
        return items, chain[0].session

    def response(self, scope: str, response_id: str) -> dict[str, Any]:
        """The response object as returned (``GET /v1/responses/{id}``)."""
        step = self._live(scope, response_id)
        if step is None:
            raise ResponseNotFound(response_id)
        return step.response

    def add(self, scope: str, response_id: str, *, parent: str | None, session: str,
            input: list[dict[str, Any]], response: dict[str, Any]) -> None:
        """Keep one answer (memory now; ``flush`` writes it)."""
        step = Step(scope, response_id, parent, session, input, response,
                    last_used=self.clock())
        step.size = len(step.data())
        if step.size > self.max_bytes:
            event("responses.not_kept", level=30, response_id=response_id, bytes=step.size,
                  reason="larger than the store's byte bound")
            return
        self._put(step)
        self._new.add(step.key)
        self._gone.discard(step.key)
        self._touch(self._chain(scope, response_id) or [step])
        self._evict()

    def __len__(self) -> int:
        return len(self._steps)

    def _live(self, scope: str, response_id: str) -> Step | None:
        step = self._steps.get((scope, response_id))
        if step is None or step.last_used < self.clock() - self.ttl:
            return None
        return step

    def _chain(self, scope: str, response_id: str | None) -> list[Step] | None:
        """The step and its ancestors, newest first; None if any is missing."""
        chain: list[Step] = []
        seen: set[str] = set()
        while response_id is not None:
            step = self._live(scope, response_id)
            if step is None or response_id in seen:
                return None
            seen.add(response_id)
            chain.append(step)
            response_id = step.parent
        return chain

    def _touch(self, chain: list[Step]) -> None:
        """Mark ``chain`` (newest first) used now, its oldest step the most recently:
        each stamp is later than the one before, so the order survives a restart."""
        for step in chain:
            self._last = max(self.clock(), self._last + 1e-6)
            step.last_used = self._last
            self._steps.move_to_end(step.key)
            if step.key not in self._new:
                self._touched.add(step.key)

    def _put(self, step: Step) -> None:
        if (old := self._steps.pop(step.key, None)) is not None:
            self.bytes -= old.size
        self._steps[step.key] = step
        self.bytes += step.size

    def _evict(self) -> None:
        cutoff = self.clock() - self.ttl
        while self._steps:
            key, step = next(iter(self._steps.items()))
            if len(self._steps) <= self.max_count and self.bytes <= self.max_bytes and \
                    step.last_used >= cutoff:
                break
            del self._steps[key]
            self.bytes -= step.size
            self._new.discard(key)
            self._touched.discard(key)
            self._gone.add(key)

    # -- persistence (off the request path) -------------------------------------------------

    async def load(self) -> None:
        """What an earlier lmsd kept (read once, at start)."""
        if self.store is None:
            return
        cutoff = self.clock() - self.ttl

        def read(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return db.execute(
                "SELECT scope, response_id, parent, session, data, last_used FROM responses"
                " WHERE last_used >= ? ORDER BY last_used", (cutoff,)).fetchall()

        for scope, rid, parent, session, data, used in await self.store.run(read) or []:
            try:
                raw = json.loads(data)
                step = Step(scope, rid, parent, session, list(raw["input"]),
                            dict(raw["response"]), len(data), used)
            except (ValueError, TypeError, KeyError):
                continue  # a row another version wrote: that id is not found
            self._put(step)
            self._last = max(self._last, used)
        self._evict()  # what the bounds drop now is deleted by the next flush

    async def flush(self) -> None:
        """Write what changed since the last flush (the JSON is made in the worker
        thread: a step can hold a whole prompt)."""
        new = [self._steps[k] for k in self._new if k in self._steps]
        touched = [(self._steps[k].last_used, *k) for k in self._touched if k in self._steps]
        gone = list(self._gone)
        self._new, self._touched, self._gone = set(), set(), set()
        if self.store is None or not (new or touched or gone):
            return
        cutoff = self.clock() - self.ttl

        def write(db: sqlite3.Connection) -> None:
            db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?)",
                           [(s.scope, s.response_id, s.parent, s.session, s.data(),
                             s.last_used) for s in new])
            db.executemany("UPDATE responses SET last_used = ? WHERE scope = ? AND "
                           "response_id = ?", touched)
            db.executemany("DELETE FROM responses WHERE scope = ? AND response_id = ?", gone)
            db.execute("DELETE FROM responses WHERE last_used < ?", (cutoff,))

        await self.store.run(write)

    async def run(self) -> None:
        """Flush every ``FLUSH_EVERY`` seconds, until cancelled (then once more)."""
        try:
            while True:
                await trio.sleep(FLUSH_EVERY)
                await self.flush()
        finally:
            with trio.CancelScope(shield=True):
                await self.flush()

    def _resync(self) -> Callable[[sqlite3.Connection], None]:
        """The store recovers from failed writes: every step kept, taken now."""
        kept = list(self._steps.values())
        self._new, self._touched, self._gone = set(), set(), set()

        def write(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM responses")
            db.executemany("INSERT INTO responses VALUES (?, ?, ?, ?, ?, ?)",
                           [(s.scope, s.response_id, s.parent, s.session, s.data(),
                             s.last_used) for s in kept])

        return write
