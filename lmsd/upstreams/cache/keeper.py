"""Keeps each conversation's prefix hot in one engine's cache (``keep_warm``).

lmsd cannot hold a KV cache, but it sees every conversation, knows when the engine lost
its cache and when the user is idle. Per upstream, the keeper:

- learns the engine's slots (llama-server's ``/props``, a save probe, and whether idle
  slots keep their KV: ``probe_keeps_idle``) before it steers anything;
- around each request (``turn``): takes the conversation's slot (``slots.SlotTable``),
  saves the slot's other occupant and restores this conversation's file where the
  engine allows, and sends ``id_slot`` where that helps;
- warms a conversation only where it lives (the upstream its last request went to,
  ``RecentRequests.where``): after a failover or a move, the upstream it left frees its
  slot, drops its file and never replays it (``_release_moved``);
- in the background (``run``): saves slots that went idle, notices that the engine lost
  its slots (a restart: ``/slots`` shows no task where lmsd left one, or its task ids
  went back, which works on unified KV too), and re-warms the
  most recent conversations by replaying their last request for one token, yielding at
  once to real traffic (a real request cancels a running warm-up).

Engines that offer no slot control (LM Studio, vLLM) get only the re-warm: after the
watcher's reload (``lost``), after the upstream came back, and after lmsd started.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

from ...config import Settings
from ...log import event
from ...protocol.pivot import Usage
from ...protocol.warmup import shared_start
from ...sessions.recent import RecentRequest, RecentRequests
from ..client import Upstream
from .engine_cache import occupied_slot, park, slot_action, warm_up
from .misses import Misses
from .restores import Restores
from .slot_probe import probe_slots
from .slots import BACKGROUND, SlotTable

CHECK_EVERY = 2.0  # seconds between looks at the engine's slots
#: A new conversation starts from another's slot file when their requests' starts (system
#: prompt, tools) share this many characters: two Claude Code sessions share thousands.
SEED_CHARS = 2000
QUIET_BEFORE_WARMING = 0.5  # seconds without real traffic before a warm-up starts


class CacheKeeper:
    def __init__(self, name: str, upstream: Upstream, settings: Settings,
                 recent: RecentRequests | None = None) -> None:
        self.name = name
        self.upstream = upstream
        self.settings = settings
        self.enabled = settings.keep_warm
        self.recent = recent or RecentRequests(None)
        self.table: SlotTable | None = None
        self.locks: list[trio.Lock] = []
        self._learned = self._ever_learned = False
        self._learning = trio.Lock()
        self._probed: list[int] = []  # slots the last probe wrote its prompt to
        self._queue: list[str] = []  # conversations to warm, most urgent first
        self._replays: set[str] = set()  # of those, the ones worth a replay (a prefill)
        self._warming: tuple[str, trio.CancelScope] | None = None
        self._wake = trio.Event()
        self._last_real = 0.0
        self.real_in_flight = 0
        self.reachable = True
        self.loaded = trio.Event()  # what an earlier lmsd remembered is read
        self.misses = Misses(name)
        self.restores = Restores()  # did restores save the prefill, per model
        self._task_high: int | None = None  # the engine's highest task id seen in /slots
        # Unified KV (``SlotSetup.unified``): the conversation lmsd's last request left on
        # the engine's slot, whether it holds more than its file, and the conversations
        # the engine lost (restored from their files before they are replayed).
        self._occupant: str | None = None
        self._occupant_unsaved = False
        self._lost: set[str] = set()
        self.counts = {"saved": 0, "restored": 0, "restore_failed": 0, "warmups": 0,
                       "warmups_preempted": 0, "lost": 0, "restores_skipped": 0, "parked": 0}

    # -- what the engine offers ----------------------------------------------------------

    async def learn(self) -> None:
        """Read the engine's slots (again after it restarted: it may have others). Not
        llama-server: no table (only re-warming). Raises ``httpx.HTTPError`` while the
        engine does not answer (nothing learned)."""
        if not self.enabled:
            return
        async with self._learning:
            if self._learned:
                return
            setup, self._probed = await probe_slots(self.upstream.client)
            first = not self._ever_learned
            self._learned = self._ever_learned = True
            if setup is None:
                self.table = None
                return
            old = self.table
            if old is not None and old.setup == setup:
                return
            self.table = SlotTable(setup, prefix=f"lmsd-{_safe(self.name)}",
                                   max_files=self.settings.slot_save_files)
            self.locks = [trio.Lock() for _ in range(setup.slots)]
            recent = sorted(self.recent.latest(self.name, 10_000), key=lambda r: r.at)
            for key, file in (old.files() if old else {}).items():
                self.table.adopt(key, file)
            for r in recent:
                if r.file and setup.can_save:
                    self.table.adopt(r.conversation, r.file)
                if first and r.slot is not None and setup.pins and r.slot not in self._probed:
                    self.table.place(r.conversation, r.slot)  # where an earlier lmsd left it
            event("cache.engine", upstream=self.name, **setup.to_json())

    # -- around a request ----------------------------------------------------------------

    @asynccontextmanager
    async def turn(self, conversation: str, body: dict[str, Any],
                   full: dict[str, Any] | None = None, *, path: str, can_pin: bool = True
                   ) -> AsyncIterator[dict[str, Any]]:
        """Send ``body`` for ``conversation`` (``BACKGROUND`` for side requests): a real
        request preempts a warm-up; on a steered engine it takes its slot (saving and
        restoring around it) and goes with ``id_slot`` where ``can_pin`` (the endpoint
        reads it). ``full``: the whole-history body, remembered for a re-warm."""
        if not self.enabled:
            yield body
            return
        self.real_in_flight += 1
        self._preempt(conversation)
        try:
            table = self.table  # learned at startup and in the background, never waited for
            index = table.choose(conversation) if table is not None else None
            if table is not None and table.setup.unified:
                await self._switch(conversation, body)
                try:
                    yield body
                finally:
                    self._occupant = conversation
                    self._occupant_unsaved = conversation != BACKGROUND
            elif index is None or (not can_pin and table is not None and
                                   table.setup.slots > 1):
                yield body
            else:
                async with self.locks[index]:
                    assert table is not None
                    seed = await self._seed(conversation, body, index)
                    await self._enter(conversation, index, seed=seed,
                                      model=_model(body))
                    try:
                        yield {**body, "id_slot": index} if can_pin else body
                    finally:
                        table.done(conversation, index, trio.current_time())
            if conversation != BACKGROUND:
                self._remember(conversation, path, full or body, index)
        finally:
            self.real_in_flight -= 1
            self._last_real = trio.current_time()
            self._wake.set()

    async def _seed(self, conversation: str, body: dict[str, Any], index: int
                    ) -> str | None:
        """For a conversation with no file of its own, taking slot ``index``: the file of
        the one whose request starts most like this one (``SEED_CHARS`` at least),
        restored first so that the shared system prompt and tools are not prefilled
        again on another slot. A conversation that sits unsaved on an idle slot is saved
        for it now (its lock free: never waited for)."""
        table = self.table
        if table is None or not table.setup.can_save or conversation == BACKGROUND or \
                table.restorable(conversation) or table.slot_of(conversation) is not None \
                or self.recent.get(self.name, conversation) is not None:
            return None  # not a new conversation
        candidates = set(table.files()) | {table.holder(i) for i in range(len(table.slots))
                                           if i != index}
        best, best_shared = None, SEED_CHARS - 1
        for other in candidates - {None, BACKGROUND, conversation}:
            recent = self.recent.get(self.name, other) if other else None
            if recent is not None and (shared := shared_start(body, recent.body)) > \
                    best_shared:
                best, best_shared = other, shared
        if best is None:
            return None
        held = table.slot_of(best)
        if held is not None and table.unsaved(held) and not self.locks[held].locked():
            async with self.locks[held]:
                await self._save(held, best, "seed")
        return table.files().get(best)

    async def _switch(self, conversation: str, body: dict[str, Any]) -> None:
        """Unified KV, before ``conversation``'s request, when the engine's last request
        was another conversation's (the occupant): save the occupant's slot to its file
        (an engine restart then costs a restore, as on one slot). Then, if this
        conversation ran here before: restore its file into an empty slot (the request
        picks the slot it shares most with), or, without one, park the occupant in the
        RAM cache when the two start alike (two Claude Code sessions), so that this
        request loads its own state from there (``engine_cache.park``). A new
        conversation is left to the engine: parking first would make it take (and
        consume) the other's cached state. Only while no other request of lmsd runs:
        then the engine's last slot is the occupant's."""
        occupant = self._occupant
        if occupant is None or occupant == conversation or self.real_in_flight > 1:
            return
        table = self.table
        if self._occupant_unsaved and table is not None and table.setup.can_save:
            await self._save_occupant("switch")
        if conversation == BACKGROUND or self.recent.get(self.name, conversation) is None:
            return
        if await self._restore_file(conversation, _model(body)):
            return
        kept = self.recent.get(self.name, occupant)
        if kept is None or shared_start(body, kept.body) < SEED_CHARS:
            return  # the engine's own slot choice keeps both (the RAM cache on a miss)
        error = await park(self.upstream.client)
        if error is None:
            self.counts["parked"] += 1
        event("cache.parked", upstream=self.name, conversation=occupant,
              before=conversation, error=error, level=30 if error else 20)
        self._occupant = None

    async def _save_occupant(self, why: str) -> None:
        """Unified KV: save the slot the occupant's last request left (found in
        ``/slots``) to the occupant's file."""
        table, key = self.table, self._occupant
        if table is None or key is None or key == BACKGROUND:
            return
        index = await occupied_slot(self.upstream.client)
        if index is None:
            return
        file = table.file_for(key)
        if (saved := await self._slot_action(index, "save", file)) is not None:
            self.counts["saved"] += 1
            self._occupant_unsaved = False
            self._note_file(key, index, file)
            event("cache.saved", upstream=self.name, slot=index, conversation=key,
                  file=file, why=why, **saved)
        else:
            table.forget_file(key)

    async def _restore_file(self, conversation: str, model: str) -> bool:
        """Unified KV: ``conversation``'s file into an empty slot, where it has one (and
        restores of ``model`` are not cosmetic). True when restored."""
        table = self.table
        self._lost.discard(conversation)
        if table is None or not table.restorable(conversation) or \
                self.restores.replay_instead(model):
            return False
        index = await occupied_slot(self.upstream.client, empty=True)
        file = table.files().get(conversation)
        if index is None or file is None:
            return False
        if (restored := await self._slot_action(index, "restore", file)) is None:
            self.counts["restore_failed"] += 1
            table.forget_file(conversation)
            return False
        self.counts["restored"] += 1
        self._occupant, self._occupant_unsaved = conversation, False
        event("cache.restored", upstream=self.name, slot=index, conversation=conversation,
              file=file, seeded=False, **restored)
        self.restores.restored(conversation, model, restored.get("tokens"))
        return True

    async def _save(self, index: int, key: str, why: str) -> None:
        """Save slot ``index`` (its lock held) as ``key``'s file."""
        assert self.table is not None
        file = self.table.file_for(key)
        if (saved := await self._slot_action(index, "save", file)) is not None:
            self.counts["saved"] += 1
            self.table.saved(index, key)
            self._note_file(key, index, file)
            event("cache.saved", upstream=self.name, slot=index, conversation=key,
                  file=file, why=why, **saved)
        else:
            self.table.forget_file(key)

    async def _enter(self, conversation: str, index: int, seed: str | None = None,
                     model: str | None = None) -> bool:
        """Take slot ``index`` (its lock held): save its occupant, restore ours (or the
        ``seed`` a new conversation starts from), unless restores of ``model`` proved
        cosmetic (``restores.py``). True when a file of its own was restored."""
        assert self.table is not None
        step = self.table.enter(conversation, index, trio.current_time(), seed=seed)
        if step.taken:
            event("cache.pinned", upstream=self.name, slot=index, conversation=conversation,
                  replaced=step.replaced, restore=step.restore is not None,
                  seeded=step.seeded)
            if step.replaced and step.replaced != BACKGROUND and not self.table.restorable(
                    step.replaced):
                self.misses.cost(step.replaced, f"its slot {index} went to {conversation}")
        if step.save and step.saved_key:
            if (saved := await self._slot_action(index, "save", step.save)) is not None:
                self.counts["saved"] += 1
                self.table.saved(index, step.saved_key)
                self._note_file(step.saved_key, index, step.save)
                event("cache.saved", upstream=self.name, slot=index,
                      conversation=step.saved_key, file=step.save, why="switch", **saved)
            else:
                self.table.forget_file(step.saved_key)
        if step.restore and self.restores.replay_instead(model):
            self.counts["restores_skipped"] += 1  # it would restore nothing: see restores.py
        elif step.restore:
            if (restored := await self._slot_action(index, "restore", step.restore)) \
                    is not None:
                self.counts["restored"] += 1
                event("cache.restored", upstream=self.name, slot=index,
                      conversation=conversation, file=step.restore, seeded=step.seeded,
                      **restored)
                if not step.seeded:
                    self.restores.restored(conversation, model or "",
                                           restored.get("tokens"))
                    return True
            else:
                self.counts["restore_failed"] += 1
                if not step.seeded:
                    self.table.forget_file(conversation)
        return False

    async def _slot_action(self, index: int, action: str, file: str
                           ) -> dict[str, Any] | None:
        """The engine's figures (tokens, bytes, ms), or None when it failed."""
        error, figures = await slot_action(self.upstream.client, index, action, file)
        if error is not None:
            event("cache.slot_failed", level=30, upstream=self.name, slot=index,
                  action=action, file=file, error=error)
            return None
        return figures

    def _remember(self, conversation: str, path: str, body: dict[str, Any],
                  slot: int | None) -> None:
        """Kept in memory now, written to the store by ``run`` (never on the turn's path:
        the body is Claude Code's whole prompt)."""
        kept = self.recent.get(self.name, conversation)
        self.recent.note(RecentRequest(self.name, conversation, path, body, _wall(), slot,
                                       kept.file if kept else None))

    def _note_file(self, conversation: str, slot: int, file: str) -> None:
        kept = self.recent.get(self.name, conversation)
        if kept is not None:
            kept.file, kept.slot = file, slot
            self.recent.note(kept)

    # -- the engine lost its cache, and warming it again ------------------------------------

    def lost(self, why: str) -> None:
        """The engine lost what it held (a reload, a restart): restore or re-warm the
        most recent conversations while the user is idle."""
        if not self.enabled:
            return
        self.counts["lost"] += 1
        self._release_moved()
        held = self.table.lost() if self.table is not None else []
        self.misses.everyone(why)
        self.restores.clear()
        self._learned = False  # a restarted engine may have other slots
        replays = self.settings.rewarm_conversations
        since = self._active_since()
        recent = [r.conversation for r in self.recent.latest(self.name, self.recent.keep,
                                                             since=since)]
        order = [c for c in dict.fromkeys([*held, *recent]) if c in recent]
        table = self.table
        # Restores cost milliseconds: every conversation with a file, as many as there are
        # slots for. A replay costs a cold prefill: only the most recent ones.
        self._replays = set(order[:replays])
        restorable = [c for c in order if table is not None and table.restorable(c)
                      and not self._replay_instead(c)]
        # Unified KV: the others' files are restored when they come back (``_switch``).
        room = table.setup.slots if table is not None and table.setup.pins else replays
        self._queue = [c for c in order if c in self._replays or c in restorable][:room]
        self._occupant, self._occupant_unsaved = None, False
        self._lost = set(self._queue)
        event("cache.lost", level=30, upstream=self.name, why=why,
              rewarm=list(self._queue) or None)
        self._wake.set()

    def _active_since(self) -> float:
        """Conversations idle longer than ``active_window`` are not warmed: after a night
        the user has moved on, and a warm-up would load a model for nobody."""
        return _wall() - self.settings.active_window

    def _release_moved(self) -> None:
        """Conversations that moved to another upstream (a failover, a placement change)
        are no longer this one's to keep: their slot is freed, their file dropped, and
        they leave the warm-up queue."""
        known = set(self._queue) | (self.table.known() if self.table is not None else set())
        for conversation in known - {BACKGROUND}:
            where = self.recent.where(conversation)
            if where is None or where == self.name:
                continue
            if self.table is not None:
                self.table.release(conversation)
            if conversation in self._queue:
                self._queue.remove(conversation)
            self._replays.discard(conversation)
            self.misses.cost(conversation, f"it moved to upstream {where}")
            event("cache.released", upstream=self.name, conversation=conversation,
                  moved_to=where)

    def forget(self, session: str | None = None) -> None:
        """``lmsd reset``: nothing of the session is warmed again."""
        self.recent.forget(session)
        self._queue = [c for c in self._queue
                       if session is not None and c.split("/", 1)[0] != session]

    def prefilled(self, conversation: str, usage: Usage | None,
                  expected: int | None = None) -> None:
        """After a turn: what the engine prefilled (a miss is reported, with its cause);
        ``expected``: what a chained turn prefills by design."""
        if usage is not None and self._judge(conversation, usage.prefilled_tokens,
                                             usage.cached_tokens):
            self.misses.cost(conversation, "the engine restored its slot file but kept "
                             "none of it (llama.cpp on a sliding-window or hybrid model)")
        self.misses.turn(conversation, usage, expected)

    def _judge(self, conversation: str, prefilled: int | None, cached: int) -> bool:
        """Did what the last restore (or replay) of ``conversation`` put in the engine
        save this prefill? Said at each failure (True); the first one for a model
        switches its warm-ups to replays."""
        bad = self.restores.turn(conversation, prefilled, cached)
        if bad is not None:
            event("cache.restore_ineffective", level=30, upstream=self.name,
                  conversation=conversation, **bad.to_json())
        return bad is not None

    def _replay_instead(self, conversation: str) -> bool:
        recent = self.recent.get(self.name, conversation)
        return self.restores.replay_instead(_model(recent.body) if recent else None)

    def _preempt(self, conversation: str) -> None:
        if self._warming is not None:
            warming, scope = self._warming
            scope.cancel()
            self.counts["warmups_preempted"] += 1
            event("cache.warmup_preempted", upstream=self.name, conversation=warming,
                  by=conversation)
            if warming != conversation:
                self._queue.append(warming)  # warmed again once the user is idle
        if conversation in self._queue:
            self._queue.remove(conversation)  # its own request warms it

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The background half: idle saves, lost-slot checks and warm-ups. On start, the
        conversations an earlier lmsd served are warmed (cheap where still cached)."""
        task_status.started()
        if not self.enabled:
            await trio.sleep_forever()
        await self.recent.load()  # once: the daemon loads it before learning the engine
        recent = self.recent.latest(self.name, self.settings.rewarm_conversations,
                                    since=self._active_since())
        self._queue = [r.conversation for r in recent]
        self._replays = set(self._queue)
        self.loaded.set()
        next_check = 0.0
        try:
            await self._serve(next_check)
        finally:
            with trio.CancelScope(shield=True):  # what the last turns left, kept
                await self.recent.flush()

    async def _serve(self, next_check: float) -> None:
        while True:
            with trio.move_on_after(1.0):
                await self._wake.wait()
            self._wake = trio.Event()
            now = trio.current_time()
            if now >= next_check:
                next_check = now + CHECK_EVERY
                self._release_moved()
                await self._check_engine()
            await self.recent.flush()
            if self._idle() and now - self._last_real >= QUIET_BEFORE_WARMING:
                await self._save_idle()
                await self._warm_next()

    def _idle(self) -> bool:
        """No request of lmsd's runs on the engine: background work (learning its slots,
        saves, warm-ups) never competes with an answer being served."""
        return self.real_in_flight == 0 and self.upstream.busy == 0

    async def _check_engine(self) -> None:
        """Has the engine lost the slots lmsd left filled? llama-server's ``/slots`` lists
        no task on a slot since it started: a slot lmsd left holding a conversation that
        shows none means the engine restarted. Learning (its probes write to slots) waits
        until lmsd's requests there are done; so does every look at a one-at-a-time
        engine."""
        if (not self._learned and not self._idle()) or self.upstream.hold_background():
            return
        try:
            await self.learn()
        except httpx.HTTPError:
            return
        table = self.table
        if table is None:
            return
        try:
            answer = await self.upstream.client.get("/slots", timeout=5.0)
            slots = answer.json() if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            self.reachable = False
            return
        self.reachable = True
        if not isinstance(slots, list):
            return
        if self._tasks_went_back(slots):
            self.lost("the engine restarted (its task ids started again)")
            return
        for index, slot in enumerate(slots[:len(table.slots)]):
            if table.holder(index) is not None and not self.locks[index].locked() and \
                    isinstance(slot, dict) and "id_task" not in slot:
                self.lost("the engine restarted (its slots are empty)")
                return

    def _tasks_went_back(self, slots: list[Any]) -> bool:
        """llama-server numbers its tasks from 0 on start, and each slot shows the id of
        the last task it ran (``id_task``, kept when an idle slot is cleared): the highest
        id never goes down while the engine runs. Lower (or none, after there was one)
        means it restarted; this works on every slot setup, unified KV included, where
        lmsd pins no slot to watch."""
        ids = [s["id_task"] for s in slots if isinstance(s, dict)
               and isinstance(s.get("id_task"), int)]
        high = max(ids) if ids else None
        before, self._task_high = self._task_high, high
        return before is not None and (high is None or high < before)

    async def _save_idle(self) -> None:
        table = self.table
        if table is None:
            return
        if table.setup.unified:
            if self._occupant_unsaved and table.setup.can_save and trio.current_time() - \
                    self._last_real >= self.settings.slot_save_idle:
                await self._save_occupant("idle")
            return
        for index, key in table.to_save(trio.current_time(), self.settings.slot_save_idle):
            if not self._idle() or self.locks[index].locked():
                return
            async with self.locks[index]:
                if table.holder(index) == key:
                    await self._save(index, key, "idle")

    async def _warm_next(self) -> None:
        """Restore or replay the next conversation in the queue, unless a real request
        comes first (it cancels the replay)."""
        if not self._queue:
            return
        conversation = self._queue.pop(0)
        recent = self.recent.get(self.name, conversation)
        table = self.table
        if table is not None and table.slot_of(conversation) is not None:
            return  # it holds its slot already
        with trio.CancelScope() as scope:
            self._warming = (conversation, scope)
            try:
                await self._warm(conversation, recent)
            finally:
                self._warming = None

    async def _warm(self, conversation: str, recent: RecentRequest | None) -> None:
        try:
            await self.learn()
        except httpx.HTTPError:
            return
        if recent is None:
            return  # it lives on another upstream now (or was reset): not warmed here
        table = self.table
        index = table.choose(conversation) if table is not None else None
        model = _model(recent.body)
        replay = conversation in self._replays or self.restores.replay_instead(model)
        if table is not None and table.setup.unified:
            if conversation in self._lost:
                await self._restore_file(conversation, model)
            if replay:
                await self._replay(conversation, recent, None)
                self._occupant, self._occupant_unsaved = conversation, True
            return
        if index is None:
            if replay:
                await self._replay(conversation, recent, None)
            return
        if table is not None and table.holder(index) not in (None, BACKGROUND):
            return  # a warm-up never evicts a conversation (the queue is most recent first)
        async with self.locks[index]:
            assert table is not None
            # A restore, where it can: milliseconds.
            restored = await self._enter(conversation, index, model=model)
            if restored and table.setup.pins:
                event("cache.warmed", upstream=self.name, conversation=conversation,
                      slot=index, how="restored")
            # Then the last request: what the file lacks (turns since it was saved) is
            # prefilled now; a file that is current makes it a one-token cache hit (its
            # counters judge the restore at once).
            if replay:
                await self._replay(conversation, recent, index)
            table.done(conversation, index, trio.current_time())

    async def _replay(self, conversation: str, recent: RecentRequest | None,
                      index: int | None) -> None:
        if recent is None:
            return
        started = trio.current_time()
        event("cache.warmup", upstream=self.name, conversation=conversation, slot=index)
        error, counters = await warm_up(self.upstream.client, recent.path, recent.body,
                                        index, self.upstream.read_timeout)
        if error is not None:
            event("cache.warmup_failed", level=30, upstream=self.name,
                  conversation=conversation, error=error)
            return
        self.counts["warmups"] += 1
        prefilled, cached = counters.get("prefilled_tokens"), counters.get("cached_tokens", 0)
        self._judge(conversation, prefilled, cached)  # a restore just before it
        if prefilled is not None:  # the next real turn judges the replay
            self.restores.restored(conversation, _model(recent.body), prefilled + cached,
                                   how="replay")
        event("cache.warmed", upstream=self.name, conversation=conversation, slot=index,
              how="replayed", seconds=round(trio.current_time() - started, 3), **counters)

    def to_json(self) -> dict[str, Any]:
        """For ``/upstreams``: what the engine offers and what the keeper did."""
        return {"enabled": self.enabled,
                "slots": self.table.to_json() if self.table is not None else None,
                "warming": self._warming[0] if self._warming else None,
                "queued": list(self._queue), "misses": self.misses.count,
                "restore": self.restores.summary() or "no restore judged ineffective",
                "restores": self.restores.to_json(), **self.counts}


def _safe(name: str) -> str:
    """An upstream name as part of a file name llama-server accepts."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "upstream"


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    return model if isinstance(model, str) else ""


def _wall() -> float:
    return time.time()
