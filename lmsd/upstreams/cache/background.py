"""The keeper's background loop, one per upstream (``run``): only while no real request
runs and the user has been quiet a moment, it learns the engine's slots and looks for a
restart (``engine_watch.py``), writes the last turns to the store, saves slots that went
idle (an engine crash gives no warning), and re-warms the conversations the engine lost
(``lost``): a restore where it can (milliseconds), then a replay of the last request for
one token (a prefill), yielding at once to real traffic (a real request cancels it:
``turns.Turns.preempt``). A conversation is warmed only where it lives: one that moved to
another upstream is released here (``release_moved``)."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from ...log import event
from ...sessions.recent import RecentRequest
from .engine_cache import warm_up
from .engine_watch import EngineWatch, TaskIds
from .moves import enter, restore_file, save, save_occupant
from .slots import BACKGROUND
from .state import KeeperState, model_of

CHECK_EVERY = 2.0  # seconds between looks at the engine's slots
QUIET_BEFORE_WARMING = 0.5  # seconds without real traffic before a warm-up starts


class Background:
    def __init__(self, state: KeeperState, watch: EngineWatch) -> None:
        self.state = state
        self.watch = watch
        self.loaded = trio.Event()  # what an earlier lmsd remembered is read

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Idle saves, lost-slot checks and warm-ups. On start, the conversations an
        earlier lmsd served are warmed (cheap where still cached)."""
        state = self.state
        task_status.started()
        await state.recent.load()  # once: the daemon loads it before learning the engine
        recent = state.recent.latest(state.name, state.settings.rewarm_conversations,
                                     since=state.active_since())
        state.queue = [r.conversation for r in recent]
        state.replays = set(state.queue)
        self.loaded.set()
        try:
            await self._serve(next_check=0.0)
        finally:
            with trio.CancelScope(shield=True):  # what the last turns left, kept
                await state.recent.flush()

    async def _serve(self, next_check: float) -> None:
        state = self.state
        while True:
            with trio.move_on_after(1.0):
                await state.wake.wait()
            state.wake = trio.Event()
            now = trio.current_time()
            if now >= next_check:
                next_check = now + CHECK_EVERY
                await self.check()
            await state.recent.flush()
            if state.idle() and now - state.last_real >= QUIET_BEFORE_WARMING:
                await self.save_idle()
                await self.warm_next()

    async def check(self) -> None:
        """Release the conversations that moved away, and look at the engine: a restart
        means it lost its slots."""
        self.release_moved()
        if (why := await self.watch.look()) is not None:
            self.lost(why)

    # -- the engine lost its cache ----------------------------------------------------------

    def lost(self, why: str, *, model: str | None = None) -> None:
        """The engine lost what it held (a reload, a restart; with ``model``, that model's
        cache only: it was loaded again, after a swap or a reload): restore or re-warm the
        most recent conversations (on ``model``) while the user is idle."""
        state = self.state
        state.counts["lost"] += 1
        self.release_moved()
        table = state.table
        held = table.lost() if table is not None else []
        state.misses.everyone(why)
        state.restores.clear()
        self.watch.learned = False  # a restarted engine may have other slots
        self.watch.tasks = TaskIds()  # and numbers its tasks from 0: told once, not again
        replays = state.settings.rewarm_conversations
        state.lost_model = model
        recent = self._most_recent()
        order = [c for c in dict.fromkeys([*held, *recent]) if c in recent]
        # Restores cost milliseconds: every conversation with a file, as many as there are
        # slots for. A replay costs a cold prefill: only the most recent ones.
        state.replays = set(order[:replays])
        restorable = [c for c in order if table is not None and table.restorable(c)
                      and not self._replay_instead(c)]
        # Unified KV: the others' files are restored when they come back (``Turns.switch``).
        room = table.setup.slots if table is not None and table.setup.pins else replays
        state.queue = [c for c in order if c in state.replays or c in restorable][:room]
        state.occupant, state.occupant_unsaved = None, False
        state.lost = set(state.queue)
        event("cache.lost", level=30, upstream=state.name, why=why,
              rewarm=list(state.queue) or None)
        state.wake.set()

    def _most_recent(self) -> list[str]:
        """The conversations active lately on this upstream (on the model that was lost,
        when only one was), most recent first."""
        state = self.state
        return [r.conversation for r in state.recent.latest(
            state.name, state.recent.keep, since=state.active_since())
            if state.lost_model is None or r.body.get("model") == state.lost_model]

    def _still_due(self, conversation: str) -> bool:
        """Is a warm-up queued at the loss still worth it now? A restore always is (it
        costs milliseconds); a replay (a cold prefill) only while the conversation is
        among the ``rewarm_conversations`` most recent: the turn that loaded the model
        came after the loss, and replaying another would push that one out."""
        state, table = self.state, self.state.table
        if table is not None and table.restorable(conversation):
            return True
        return conversation in self._most_recent()[:state.settings.rewarm_conversations]

    def release_moved(self) -> None:
        """Conversations that moved to another upstream (a failover, a placement change)
        are no longer this one's to keep: their slot is freed, their file dropped, and
        they leave the warm-up queue."""
        state, table = self.state, self.state.table
        known = set(state.queue) | (table.known() if table is not None else set())
        for conversation in known - {BACKGROUND}:
            where = state.recent.where(conversation)
            if where is None or where == state.name:
                continue
            if table is not None:
                table.release(conversation)
            if conversation in state.queue:
                state.queue.remove(conversation)
            state.replays.discard(conversation)
            state.misses.cost(conversation, f"it moved to upstream {where}")
            event("cache.released", upstream=state.name, conversation=conversation,
                  moved_to=where)

    def forget(self, session: str | None = None) -> None:
        """``lmsd reset``: nothing of the session is warmed again."""
        state = self.state
        state.recent.forget(session)
        state.queue = [c for c in state.queue
                       if session is not None and c.split("/", 1)[0] != session]

    def _replay_instead(self, conversation: str) -> bool:
        recent = self.state.recent.get(self.state.name, conversation)
        return self.state.restores.replay_instead(model_of(recent.body) if recent else None)

    # -- while the user is idle ---------------------------------------------------------------

    async def save_idle(self) -> None:
        await self._save(self.state.settings.slot_save_idle, "idle")

    async def save_all(self, why: str) -> None:
        """Every unsaved slot, now (the engine is about to stop: its model leaves). A
        warm-up under way is cancelled first: it would hold its slot, for nobody."""
        if self.state.warming is not None:
            self.state.warming[1].cancel()
        await self._save(0.0, why, wait=True)

    async def _save(self, idle: float, why: str, *, wait: bool = False) -> None:
        """Save slots idle for ``idle`` seconds; ``wait``: for a slot in use too (else a
        real request on the engine puts the saves off)."""
        state, table = self.state, self.state.table
        if table is None:
            return
        if table.setup.unified:
            if state.occupant_unsaved and table.setup.can_save and trio.current_time() - \
                    state.last_real >= idle:
                await save_occupant(state, why)
            return
        for index, key in table.to_save(trio.current_time(), idle):
            if not wait and (not state.idle() or state.locks[index].locked()):
                return
            async with state.locks[index]:
                if table.holder(index) == key:
                    await save(state, index, key, why)

    async def warm_next(self) -> None:
        """Restore or replay the next conversation in the queue, unless a real request
        comes first (it cancels the replay)."""
        state = self.state
        if not state.queue:
            return
        conversation = state.queue.pop(0)
        recent = state.recent.get(state.name, conversation)
        table = state.table
        if table is not None and table.slot_of(conversation) is not None:
            return  # it holds its slot already
        with trio.CancelScope() as scope:
            state.warming = (conversation, scope)
            try:
                await self._warm(conversation, recent)
            finally:
                state.warming = None

    async def _warm(self, conversation: str, recent: RecentRequest | None) -> None:
        state = self.state
        try:
            await self.watch.learn()
        except httpx.HTTPError:
            return
        if recent is None:
            return  # it lives on another upstream now (or was reset): not warmed here
        if not self._still_due(conversation):
            event("cache.warmup_skipped", upstream=state.name, conversation=conversation,
                  why="more recent conversations on its model came first")
            return
        table = state.table
        index = table.choose(conversation) if table is not None else None
        model = model_of(recent.body)
        replay = conversation in state.replays or state.restores.replay_instead(model)
        if table is not None and table.setup.unified:
            if conversation in state.lost:
                await restore_file(state, conversation, model)
            if replay:
                await self._replay(conversation, recent, None)
                state.occupant, state.occupant_unsaved = conversation, True
            return
        if index is None:
            if replay:
                await self._replay(conversation, recent, None)
            return
        if table is not None and table.holder(index) not in (None, BACKGROUND):
            return  # a warm-up never evicts a conversation (the queue is most recent first)
        async with state.locks[index]:
            assert table is not None
            # A restore, where it can: milliseconds.
            restored = await enter(state, conversation, index, model=model)
            if restored and table.setup.pins:
                event("cache.warmed", upstream=state.name, conversation=conversation,
                      slot=index, how="restored")
            # Then the last request: what the file lacks (turns since it was saved) is
            # prefilled now; a file that is current makes it a one-token cache hit (its
            # counters judge the restore at once).
            if replay:
                await self._replay(conversation, recent, index)
            table.done(conversation, index, trio.current_time())

    async def _replay(self, conversation: str, recent: RecentRequest,
                      index: int | None) -> None:
        state = self.state
        model = model_of(recent.body)
        if state.model_loaded is not None and model and not state.model_loaded(model):
            event("cache.warmup_skipped", upstream=state.name, conversation=conversation,
                  model=model, why="its model is not loaded (a request for it loads it)")
            return
        started = trio.current_time()
        event("cache.warmup", upstream=state.name, conversation=conversation, slot=index)
        error, counters = await warm_up(state.upstream.client, recent.path, recent.body,
                                        index, state.upstream.read_timeout)
        if error is not None:
            event("cache.warmup_failed", level=30, upstream=state.name,
                  conversation=conversation, error=error)
            return
        state.counts["warmups"] += 1
        prefilled, cached = counters.get("prefilled_tokens"), counters.get("cached_tokens", 0)
        state.judge(conversation, prefilled, cached)  # a restore just before it
        if prefilled is not None:  # the next real turn judges the replay
            state.restores.restored(conversation, model_of(recent.body), prefilled + cached,
                                    how="replay")
        event("cache.warmed", upstream=state.name, conversation=conversation, slot=index,
              how="replayed", seconds=round(trio.current_time() - started, 3), **counters)
