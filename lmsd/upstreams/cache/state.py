"""What the keeper's two halves share, per upstream: the per-request path (``turns.py``)
and the background loop (``background.py``) each hold this one object, so neither reaches
into the other. It holds the slot table and its locks, the unified-KV occupant, the
counters, the misses and restores judged, the real traffic (what the background yields
to) and the warm-up queue (what a real request preempts). No I/O here: the moves on the
engine's slots are ``moves.py``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import trio

from ...config.sections import CacheSettings
from ...log import event
from ...sessions.recent import RecentRequest, RecentRequests
from ..client import Upstream
from .misses import Misses
from .restores import Restores
from .slots import SlotTable


class KeeperState:
    def __init__(self, name: str, upstream: Upstream, settings: CacheSettings,
                 recent: RecentRequests | None = None) -> None:
        self.name = name
        self.upstream = upstream
        self.settings = settings
        self.recent = recent or RecentRequests(None)
        self.table: SlotTable | None = None  # None: not llama-server, or not learned yet
        self.locks: list[trio.Lock] = []  # one per slot, held around a request or a move
        self.misses = Misses(name)
        self.restores = Restores()  # did restores save the prefill, per model
        self.counts = {"saved": 0, "restored": 0, "restore_failed": 0, "warmups": 0,
                       "warmups_preempted": 0, "lost": 0, "restores_skipped": 0, "parked": 0}
        # Unified KV (``SlotSetup.unified``): the conversation lmsd's last request left on
        # the engine's slot, whether it holds more than its file, and the conversations
        # the engine lost (restored from their files before they are replayed).
        self.occupant: str | None = None
        self.occupant_unsaved = False
        self.lost: set[str] = set()
        self.lost_model: str | None = None  # the loss was this model's only (a load)
        # Real traffic: the background waits for none to run, and for a quiet moment.
        self.real_in_flight = 0
        self.last_real = 0.0
        self.wake = trio.Event()  # a turn ended, or the engine lost its cache: look again
        # Warm-ups: conversations to warm, most urgent first; of those, the ones worth a
        # replay (a prefill); the one warming now (a real request cancels it).
        self.queue: list[str] = []
        self.replays: set[str] = set()
        self.warming: tuple[str, trio.CancelScope] | None = None
        #: Is a model loaded (the model pool's loader)? A replay for one that is not would
        #: make LM Studio load it by itself (JIT), behind the pool's back: skipped.
        self.model_loaded: Callable[[str], bool] | None = None

    def idle(self) -> bool:
        """No request of lmsd's runs on the engine: background work (learning its slots,
        saves, warm-ups) never competes with an answer being served."""
        return self.real_in_flight == 0 and self.upstream.busy == 0

    def active_since(self) -> float:
        """Conversations idle longer than ``active_window`` are not warmed: after a night
        the user has moved on, and a warm-up would load a model for nobody."""
        return wall() - self.settings.active_window

    def remember(self, conversation: str, path: str, body: dict[str, Any],
                 slot: int | None) -> None:
        """Kept in memory now, written to the store by the background loop (never on the
        turn's path: the body is Claude Code's whole prompt)."""
        kept = self.recent.get(self.name, conversation)
        self.recent.note(RecentRequest(self.name, conversation, path, body, wall(), slot,
                                       kept.file if kept else None))

    def note_file(self, conversation: str, slot: int, file: str) -> None:
        """The conversation's slot file, remembered with its last request (an earlier
        lmsd's files are adopted after a restart of lmsd)."""
        kept = self.recent.get(self.name, conversation)
        if kept is not None:
            kept.file, kept.slot = file, slot
            self.recent.note(kept)

    def judge(self, conversation: str, prefilled: int | None, cached: int) -> bool:
        """Did what the last restore (or replay) of ``conversation`` put in the engine
        save this prefill? Said at each failure (True); the first one for a model
        switches its warm-ups to replays."""
        bad = self.restores.turn(conversation, prefilled, cached)
        if bad is not None:
            event("cache.restore_ineffective", level=30, upstream=self.name,
                  conversation=conversation, **bad.to_json())
        return bad is not None

    def to_json(self) -> dict[str, Any]:
        return {"slots": self.table.to_json() if self.table is not None else None,
                "warming": self.warming[0] if self.warming else None,
                "queued": list(self.queue), "misses": self.misses.count,
                "restore": self.restores.summary() or "no restore judged ineffective",
                "restores": self.restores.to_json(), **self.counts}


def model_of(body: dict[str, Any]) -> str:
    model = body.get("model")
    return model if isinstance(model, str) else ""


def wall() -> float:
    return time.time()
