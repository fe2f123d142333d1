"""Keeps each conversation's prefix hot in one engine's cache (``keep_warm``).

lmsd cannot hold a KV cache, but it sees every conversation, knows when the engine lost
its cache and when the user is idle. Per upstream, the keeper:

- learns the engine's slots (llama-server's ``/props``, a save probe, and whether idle
  slots keep their KV: ``probe_keeps_idle``) before it steers anything;
- around each request (``turn``): takes the conversation's slot (``slots.SlotTable``),
  saves the slot's other occupant and restores this conversation's file where the
  engine allows, and sends ``id_slot`` where that helps;
- in the background (``run``): saves slots that went idle, notices that the engine lost
  its slots (``/slots`` shows no task where lmsd left one: a restart), and re-warms the
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

from ..config import Settings
from ..log import event
from ..protocol.pivot import Usage
from ..protocol.warmup import shared_start, warmup_body
from ..sessions.recent import RecentRequest, RecentRequests
from .client import Upstream
from .slot_probe import probe_slots
from .slots import BACKGROUND, SlotTable

CHECK_EVERY = 2.0  # seconds between looks at the engine's slots
#: A turn that prefilled more than this many tokens, and most of its prompt, missed the
#: cache (the first turn of a conversation excepted: it is cold by nature).
MISS_TOKENS = 1024
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
        self._warming: tuple[str, trio.CancelScope] | None = None
        self._wake = trio.Event()
        self._last_real = 0.0
        self.real_in_flight = 0
        self.reachable = True
        self.loaded = trio.Event()  # what an earlier lmsd remembered is read
        self._seen: set[str] = set()  # conversations that had a turn here
        self._why: dict[str, str] = {}  # what last cost a conversation its cache
        self.counts = {"saved": 0, "restored": 0, "restore_failed": 0, "warmups": 0,
                       "warmups_preempted": 0, "lost": 0, "misses": 0}

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
            if index is None or (not can_pin and table is not None and table.setup.slots > 1):
                yield body
            else:
                async with self.locks[index]:
                    assert table is not None
                    seed = await self._seed(conversation, body, index)
                    await self._enter(conversation, index, seed=seed)
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
                table.restorable(conversation):
            return None
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

    async def _save(self, index: int, key: str, why: str) -> None:
        """Save slot ``index`` (its lock held) as ``key``'s file."""
        assert self.table is not None
        file = self.table.file_for(key)
        if await self._slot_action(index, "save", file):
            self.counts["saved"] += 1
            self.table.saved(index, key)
            self._note_file(key, index, file)
            event("cache.saved", upstream=self.name, slot=index, conversation=key,
                  file=file, why=why)
        else:
            self.table.forget_file(key)

    async def _enter(self, conversation: str, index: int, seed: str | None = None
                     ) -> None:
        """Take slot ``index`` (its lock held): save its occupant, restore ours (or the
        ``seed`` a new conversation starts from)."""
        assert self.table is not None
        step = self.table.enter(conversation, index, trio.current_time(), seed=seed)
        if step.taken:
            event("cache.pinned", upstream=self.name, slot=index, conversation=conversation,
                  replaced=step.replaced, restore=step.restore is not None,
                  seeded=step.seeded)
            if step.replaced and step.replaced != BACKGROUND and not self.table.restorable(
                    step.replaced):
                self._why[step.replaced] = f"its slot {index} went to {conversation}"
        if step.save and step.saved_key:
            if await self._slot_action(index, "save", step.save):
                self.counts["saved"] += 1
                self.table.saved(index, step.saved_key)
                self._note_file(step.saved_key, index, step.save)
                event("cache.saved", upstream=self.name, slot=index,
                      conversation=step.saved_key, file=step.save, why="switch")
            else:
                self.table.forget_file(step.saved_key)
        if step.restore:
            if await self._slot_action(index, "restore", step.restore):
                self.counts["restored"] += 1
                event("cache.restored", upstream=self.name, slot=index,
                      conversation=conversation, file=step.restore, seeded=step.seeded)
            else:
                self.counts["restore_failed"] += 1
                if not step.seeded:
                    self.table.forget_file(conversation)

    async def _slot_action(self, index: int, action: str, file: str) -> bool:
        try:
            answer = await self.upstream.client.post(
                f"/slots/{index}?action={action}", json={"filename": file}, timeout=120.0)
        except httpx.HTTPError as exc:
            event("cache.slot_failed", level=30, upstream=self.name, slot=index,
                  action=action, file=file, error=str(exc) or type(exc).__name__)
            return False
        if answer.status_code != 200:
            event("cache.slot_failed", level=30, upstream=self.name, slot=index,
                  action=action, file=file, status=answer.status_code,
                  error=answer.text[:200])
            return False
        return True

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
        held = self.table.lost() if self.table is not None else []
        for conversation in self._seen:
            self._why[conversation] = why
        self._learned = False  # a restarted engine may have other slots
        limit = self.settings.rewarm_conversations
        if self.table is not None:
            limit = min(limit, self.table.setup.slots if self.table.setup.pins else limit)
        recent = [r.conversation for r in self.recent.latest(self.name, limit)]
        order = [c for c in [*held, *recent] if c != BACKGROUND]
        self._queue = list(dict.fromkeys(order))[:limit]
        event("cache.lost", level=30, upstream=self.name, why=why,
              rewarm=list(self._queue) or None)
        self._wake.set()

    def forget(self, session: str | None = None) -> None:
        """``lmsd reset``: nothing of the session is warmed again."""
        self.recent.forget(session)
        self._queue = [c for c in self._queue
                       if session is not None and c.split("/", 1)[0] != session]

    def prefilled(self, conversation: str, usage: Usage | None) -> None:
        """After a turn: a miss (most of the prompt prefilled again) is reported with
        what lmsd knows of its cause."""
        why = self._why.pop(conversation, None)
        seen = conversation in self._seen
        if len(self._seen) >= 10_000:  # bounded: forgetting only hides a miss's cause
            self._seen.clear()
            self._why.clear()
        self._seen.add(conversation)
        if usage is None or usage.prefilled_tokens is None or not seen or \
                conversation == BACKGROUND:
            return
        prefilled, cached = usage.prefilled_tokens, usage.cached_tokens
        if prefilled < MISS_TOKENS or prefilled <= cached:
            return
        self.counts["misses"] += 1
        event("cache.miss", level=30, upstream=self.name, conversation=conversation,
              prefilled_tokens=prefilled, cached_tokens=cached,
              why=why or "unknown to lmsd: evicted by the engine (another client, its "
                         "cache size), or the prompt changed early on")

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
        await self.recent.load()
        recent = self.recent.latest(self.name, self.settings.rewarm_conversations)
        self._queue = [r.conversation for r in recent]
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
                await self._check_engine()
            await self.recent.flush()
            if self.real_in_flight == 0 and now - self._last_real >= QUIET_BEFORE_WARMING:
                await self._save_idle()
                await self._warm_next()

    async def _check_engine(self) -> None:
        """Has the engine lost the slots lmsd left filled? llama-server's ``/slots`` lists
        no task on a slot since it started: a slot lmsd left holding a conversation that
        shows none means the engine restarted."""
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
        for index, slot in enumerate(slots[:len(table.slots)]):
            if table.holder(index) is not None and not self.locks[index].locked() and \
                    isinstance(slot, dict) and "id_task" not in slot:
                self.lost("the engine restarted (its slots are empty)")
                return

    async def _save_idle(self) -> None:
        table = self.table
        if table is None:
            return
        for index, key in table.to_save(trio.current_time(), self.settings.slot_save_idle):
            if self.real_in_flight or self.locks[index].locked():
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
        table = self.table
        index = table.choose(conversation) if table is not None else None
        restorable = table is not None and table.restorable(conversation)
        if recent is None and not restorable:
            return
        if index is None:
            await self._replay(conversation, recent, None)
            return
        if table is not None and table.holder(index) not in (None, BACKGROUND):
            return  # a warm-up never evicts a conversation (the queue is most recent first)
        async with self.locks[index]:
            assert table is not None
            await self._enter(conversation, index)  # a restore, where it can: milliseconds
            if restorable and table.setup.pins:
                event("cache.warmed", upstream=self.name, conversation=conversation,
                      slot=index, how="restored")
            # Then the last request: what the file lacks (turns since it was saved) is
            # prefilled now; a file that is current makes it a one-token cache hit.
            await self._replay(conversation, recent, index)
            table.done(conversation, index, trio.current_time())

    async def _replay(self, conversation: str, recent: RecentRequest | None,
                      index: int | None) -> None:
        if recent is None:
            return
        body = warmup_body(recent.path, recent.body)
        if index is not None and recent.path.endswith("/chat/completions"):
            body["id_slot"] = index
        started = trio.current_time()
        event("cache.warmup", upstream=self.name, conversation=conversation, slot=index)
        try:
            answer = await self.upstream.client.post(recent.path, json=body,
                                                     timeout=self.upstream.read_timeout)
        except httpx.HTTPError as exc:
            event("cache.warmup_failed", level=30, upstream=self.name,
                  conversation=conversation, error=str(exc) or type(exc).__name__)
            return
        if answer.status_code != 200:
            event("cache.warmup_failed", level=30, upstream=self.name,
                  conversation=conversation, status=answer.status_code,
                  error=answer.text[:200])
            return
        self.counts["warmups"] += 1
        event("cache.warmed", upstream=self.name, conversation=conversation, slot=index,
              how="replayed", seconds=round(trio.current_time() - started, 3))

    def to_json(self) -> dict[str, Any]:
        """For ``/upstreams``: what the engine offers and what the keeper did."""
        return {"enabled": self.enabled,
                "slots": self.table.to_json() if self.table is not None else None,
                "warming": self._warming[0] if self._warming else None,
                "queued": list(self._queue), **self.counts}


def _safe(name: str) -> str:
    """An upstream name as part of a file name llama-server accepts."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "upstream"


def _wall() -> float:
    return time.time()
