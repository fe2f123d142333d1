"""The session store's one SQLite writer: a long-lived thread that runs the store's work
in the order it was asked for.

Before it, every write was its own ``trio.to_thread`` call, awaited in turn: a finished
turn (its chain node, the node it chained on touched, its counters) paid three handoffs
before its stream could end. Now a turn hands its writes over without waiting and waits
once, for the last: the writer runs them in order, so when the last is done all are, and
the durability the store promises (a turn's chain node is in SQLite before its response
ends, so a ``kill -9`` right after keeps it) holds as before.

The store owns it: ``SessionStore.open`` starts it, ``aclose`` stops it and waits for the
thread (the daemon closes the store on its way out, shielded). Outcomes come back to the
trio thread (``done``), where the store handles failures as before.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import trio


@dataclass(eq=False)
class Job:
    """One piece of the store's work, and how it went."""

    fn: Callable[[sqlite3.Connection], Any]
    db: sqlite3.Connection  # the store's connection when it was asked for
    epoch: int = 0  # the store's failure count when it was asked for
    recovering: bool = False  # the store's first try after failed writes
    result: Any = None
    error: BaseException | None = None
    finished: trio.Event = field(default_factory=trio.Event)


class Writer:
    """A thread that runs jobs one by one, first in first out; ``done(job)`` is called in
    the trio thread as each ends."""

    def __init__(self, done: Callable[[Job], None]) -> None:
        self._done = done
        self._token = trio.lowlevel.current_trio_token()
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="lmsd-store-writer",
                                        daemon=True)
        self._stopped = trio.Event()
        self._thread.start()

    def submit(self, job: Job) -> Job:
        self._jobs.put(job)
        return job

    async def aclose(self) -> None:
        """Run what is queued, then stop the thread."""
        self._jobs.put(None)
        with trio.CancelScope(shield=True):
            await self._stopped.wait()
        self._thread.join()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job.result = job.fn(job.db)
            except BaseException as exc:  # the store's to handle; the writer goes on
                job.error = exc
            self._report(lambda job=job: self._finish(job))
        self._report(self._stopped.set)

    def _finish(self, job: Job) -> None:
        self._done(job)
        job.finished.set()

    def _report(self, fn: Callable[[], None]) -> None:
        with suppress(trio.RunFinishedError):  # the daemon is gone; nobody waits
            self._token.run_sync_soon(fn)
