"""Keeps each conversation's prefix hot in one engine's cache (``keep_warm``).

lmsd cannot hold a KV cache, but it sees every conversation, knows when the engine lost
its cache and when the user is idle. Per upstream, the keeper (this module: the one face
the backend, the fronts and the supervisor use) joins two halves that share one state
(``state.py``: slot table, files, unified-KV occupant, counts, restores, warm-up queue):

- around each request (``turns.py``): takes the conversation's slot (``slots.SlotTable``),
  saves the slot's other occupant and restores this conversation's file where the
  engine allows (``moves.py``), and sends ``id_slot`` where that helps; on unified KV it
  saves, restores or parks around a switch of conversation;
- in the background (``background.py``): learns the engine's slots (llama-server's
  ``/props``, a save probe, and whether idle slots keep their KV) before it steers
  anything, saves slots that went idle, notices that the engine lost its slots
  (``engine_watch.py``: ``/slots`` shows no task where lmsd left one, or its task ids
  went back, which works on unified KV too), and re-warms the most recent conversations
  by replaying their last request for one token, yielding at once to real traffic (a
  real request cancels a running warm-up). It warms a conversation only where it lives
  (the upstream its last request went to, ``RecentRequests.where``): the upstream it
  left frees its slot, drops its file and never replays it.

Engines that offer no slot control (LM Studio, vLLM) get only the re-warm: after the
watcher's reload (``lost``), after the upstream came back, and after lmsd started.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

import trio

from ...config.sections import CacheSettings
from ...protocol.pivot import Usage
from ...sessions.recent import RecentRequests
from ..client import Upstream
from .background import Background
from .engine_watch import EngineWatch
from .misses import Misses
from .restores import Restores
from .state import KeeperState
from .turns import Turns


class CacheKeeper:
    def __init__(self, name: str, upstream: Upstream, settings: CacheSettings,
                 recent: RecentRequests | None = None) -> None:
        self.name = name
        self.enabled = settings.keep_warm
        self.state = KeeperState(name, upstream, settings, recent)
        self.watch = EngineWatch(self.state)
        self.turns = Turns(self.state)
        self.background = Background(self.state, self.watch)

    @property
    def recent(self) -> RecentRequests:
        return self.state.recent

    @recent.setter
    def recent(self, recent: RecentRequests) -> None:
        """The daemon's store, set before ``learn`` and ``run`` (both halves read it)."""
        self.state.recent = recent

    @property
    def real_in_flight(self) -> int:
        return self.state.real_in_flight

    @property
    def reachable(self) -> bool:
        return self.watch.reachable

    @property
    def loaded(self) -> trio.Event:
        """Set once what an earlier lmsd remembered is read (``run``)."""
        return self.background.loaded

    @property
    def counts(self) -> dict[str, int]:
        return self.state.counts

    @property
    def misses(self) -> Misses:
        return self.state.misses

    @property
    def restores(self) -> Restores:
        return self.state.restores

    async def learn(self) -> None:
        """What the engine offers (``EngineWatch.learn``); raises ``httpx.HTTPError``
        while it does not answer."""
        if self.enabled:
            await self.watch.learn()

    def turn(self, conversation: str, body: dict[str, Any],
             full: dict[str, Any] | None = None, *, path: str, can_pin: bool = True
             ) -> AbstractAsyncContextManager[dict[str, Any]]:
        """The body to send for ``conversation``, around the request (``Turns.turn``);
        as it is where keep_warm is off."""
        if not self.enabled:
            return nullcontext(body)
        return self.turns.turn(conversation, body, full, path=path, can_pin=can_pin)

    def prefilled(self, conversation: str, usage: Usage | None,
                  expected: int | None = None) -> None:
        """After a turn: what the engine prefilled (``Turns.prefilled``)."""
        self.turns.prefilled(conversation, usage, expected)

    def lost(self, why: str, *, model: str | None = None) -> None:
        """The engine lost what it held, or only ``model``'s (``Background.lost``)."""
        if self.enabled:
            self.background.lost(why, model=model)

    async def save_all(self, why: str) -> None:
        """Save every slot holding unsaved state now (its engine is about to stop:
        ``Background.save_all``); nothing where keep_warm is off."""
        if self.enabled:
            await self.background.save_all(why)

    def forget(self, session: str | None = None) -> None:
        """``lmsd reset``: nothing of the session is warmed again."""
        self.background.forget(session)

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The background half (``Background.run``)."""
        if not self.enabled:
            task_status.started()
            await trio.sleep_forever()
        await self.background.run(task_status=task_status)

    def to_json(self) -> dict[str, Any]:
        """For ``/upstreams``: what the engine offers and what the keeper did."""
        return {"enabled": self.enabled, **self.state.to_json()}
