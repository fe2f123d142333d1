"""What the engine offers for keeping prefixes (``learn``: its slots, learned again after
it restarted) and whether it lost what lmsd left in them (``look``: a restart seen in
llama-server's ``/slots``). The background loop asks both; the supervisor asks ``learn``
once at startup. Engines without slot control learn no table: they get only re-warms."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from ...log import event
from .slot_probe import probe_slots
from .slots import BACKGROUND, SlotTable
from .state import KeeperState


class TaskIds:
    """llama-server numbers its tasks from 0 on start, and each slot shows the id of the
    last task it ran (``id_task``, kept when an idle slot is cleared): the highest id never
    goes down while the engine runs. Lower (or none, after there was one) means it
    restarted; this works on every slot setup, unified KV included, where lmsd pins no slot
    to watch."""

    def __init__(self) -> None:
        self.high: int | None = None  # the engine's highest task id seen in /slots

    def went_back(self, slots: list[Any]) -> bool:
        ids = [s["id_task"] for s in slots if isinstance(s, dict)
               and isinstance(s.get("id_task"), int)]
        high = max(ids) if ids else None
        before, self.high = self.high, high
        return before is not None and (high is None or high < before)


def emptied(table: SlotTable, locks: list[trio.Lock], slots: list[Any]) -> bool:
    """A slot lmsd left holding a conversation (and no request of lmsd's holds now) shows
    no task: llama-server lists none on a slot since it started, so it restarted."""
    return any(table.holder(index) is not None and not locks[index].locked()
               and isinstance(slot, dict) and "id_task" not in slot
               for index, slot in enumerate(slots[:len(table.slots)]))


class EngineWatch:
    def __init__(self, state: KeeperState) -> None:
        self.state = state
        self.learned = self._ever_learned = False
        self._learning = trio.Lock()
        self._probed: list[int] = []  # slots the last probe wrote its prompt to
        self.tasks = TaskIds()
        self.reachable = True

    async def learn(self) -> None:
        """Read the engine's slots (again after it restarted: it may have others). Not
        llama-server: no table (only re-warming). Raises ``httpx.HTTPError`` while the
        engine does not answer (nothing learned)."""
        state = self.state
        async with self._learning:
            if self.learned:
                return
            setup, self._probed = await probe_slots(state.upstream.client)
            first = not self._ever_learned
            self.learned = self._ever_learned = True
            if setup is None:
                state.table = None
                return
            old = state.table
            if old is not None and old.setup == setup:
                return
            table = state.table = SlotTable(setup, prefix=f"lmsd-{_safe(state.name)}",
                                            max_files=state.settings.slot_save_files)
            state.locks = [trio.Lock() for _ in range(setup.slots)]
            recent = sorted(state.recent.latest(state.name, 10_000), key=lambda r: r.at)
            for key, file in (old.files() if old else {}).items():
                table.adopt(key, file)
            for r in recent:
                if r.file and setup.can_save:
                    table.adopt(r.conversation, r.file)
                if first and r.slot is not None and setup.pins and r.slot not in self._probed:
                    table.place(r.conversation, r.slot)  # where an earlier lmsd left it
            event("cache.engine", upstream=state.name, **setup.to_json())

    async def look(self) -> str | None:
        """Has the engine lost the slots lmsd left filled? Why, or None. Learning (its
        probes write to slots) waits until lmsd's requests there are done; so does every
        look at a one-at-a-time engine."""
        state = self.state
        if (not self.learned and not state.idle()) or state.upstream.hold_background():
            return None
        try:
            await self.learn()
        except httpx.HTTPError:
            return None
        table = state.table
        if table is None:
            return None
        try:
            answer = await state.upstream.client.get("/slots", timeout=5.0)
            slots = answer.json() if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            self.reachable = False
            return None
        self.reachable = True
        if not isinstance(slots, list):
            return None
        unseen = self.tasks.high is None  # no look since the engine started, or since lmsd's
        if self.tasks.went_back(slots):
            return "the engine restarted (its task ids started again)"
        if unseen and self.tasks.high is None and state.occupant not in (None, BACKGROUND):
            # lmsd's last request left its prompt on the engine, and not one slot shows a
            # task: it restarted before any look saw the ids go up (a quick restart)
            return "the engine restarted (no slot shows the task lmsd's last request ran)"
        if emptied(table, state.locks, slots):
            return "the engine restarted (its slots are empty)"
        return None


def _safe(name: str) -> str:
    """An upstream name as part of a file name llama-server accepts."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "upstream"
