"""Which engine slot a conversation's request takes, and what to save or restore around
it. Pure (no I/O, the clock passed in): ``moves.py`` does the HTTP, ``turns.py`` and
``background.py`` the locking.

llama-server keeps one prompt per slot. Measured (``bench/day.py``, and the 11.5k-token
baseline): a side request or another session placed on a conversation's slot costs that
conversation a re-prefill of everything that differs (4.7k-12.5k tokens, 8-14 s), while
saving a slot to disk and restoring it costs 12-120 ms. So:

- **Pin** a conversation to its own slot (``id_slot``) only where idle slots keep their
  KV (per-slot KV, ``-np N``): with unified KV (the default) llama-server clears idle
  slots into its RAM cache when any task starts, and a pinned conversation would
  re-prefill every turn. There the engine picks the slot, and lmsd only **parks** the
  last conversation in the RAM cache before a similar one runs (``SlotSetup.unified``).
- **Save** the slot's occupant before another conversation takes the slot, and when it
  has been idle a while (an engine crash gives no warning), where the engine can
  (``--slot-save-path``); **restore** it before that conversation's next turn when the
  slot no longer holds it (taken by another, or lost to a restart).
- Side requests (Claude Code's titles and haiku subagents) share one ``BACKGROUND`` key:
  they are cheap to recompute, so they are never saved, and they are the first evicted.

A conversation is a string key (``session/agent``); files are named per upstream and
reused (``max_files``), so the disk they take is bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

#: The key every side request shares (titles, haiku subagents).
BACKGROUND = "background"


@dataclass(frozen=True)
class SlotSetup:
    """What lmsd learned of an engine's slots (llama-server's ``/props`` and ``/slots``)."""

    slots: int = 1
    #: Idle slots keep their KV when another task starts (per-slot KV, or no idle-slot
    #: clearing): pinning helps. False: they are cleared (unified KV); None: unknown.
    keeps_idle: bool | None = None
    can_save: bool = False  # started with --slot-save-path
    why: str = ""

    @property
    def unified(self) -> bool:
        """Several slots over one KV buffer whose idle slots are cleared into the RAM
        cache when a task starts (llama-server's default: ``-np`` auto, ``--cache-ram``
        8192, ``--cache-idle-slots``): no pinning, but lmsd parks a conversation in the
        RAM cache before a similar one runs (``engine_cache.park``)."""
        return self.slots > 1 and self.keeps_idle is False

    @property
    def pins(self) -> bool:
        """Send ``id_slot``: one slot (nothing to choose, but save/restore need the id),
        or several that keep their KV while idle."""
        return self.slots == 1 or (self.slots > 1 and self.keeps_idle is True)

    def to_json(self) -> dict[str, object]:
        return {"slots": self.slots, "keeps_idle_slots": self.keeps_idle,
                "slot_save": self.can_save, "pins": self.pins, "unified": self.unified,
                "why": self.why}


@dataclass(frozen=True)
class Step:
    """What to do around one request: save the slot's occupant first (``save``: its file),
    restore the conversation (``restore``: its file), then send with ``slot``."""

    slot: int | None
    save: str | None = None
    saved_key: str | None = None  # whose state ``save`` writes
    restore: str | None = None
    replaced: str | None = None  # the conversation the slot held before, if another
    taken: bool = False  # the conversation did not hold the slot
    seeded: bool = False  # ``restore`` is another conversation's file (a shared start)


@dataclass
class _Slot:
    holder: str | None = None  # the conversation whose prompt it holds
    dirty: bool = False  # it holds more than the holder's saved file
    used_at: float = 0.0


@dataclass
class SlotTable:
    """The slots of one engine, as lmsd last left them."""

    setup: SlotSetup
    prefix: str = "lmsd"  # file names: <prefix>-<n>.bin
    max_files: int = 4
    slots: list[_Slot] = field(init=False)
    _files: OrderedDict[str, str] = field(init=False)  # key -> file, least recent first

    def __post_init__(self) -> None:
        self.slots = [_Slot() for _ in range(self.setup.slots)]
        self._files = OrderedDict()

    # -- a request --------------------------------------------------------------------------

    def take(self, key: str, now: float) -> Step:
        """The slot for ``key``'s next request and what to do first (``enter`` the slot
        ``choose`` picks)."""
        return self.enter(key, self.choose(key), now)

    def choose(self, key: str) -> int | None:
        """The slot ``key`` goes to (None: leave it to the engine): its own if it holds
        one; else a free one; else the least recently used, side requests' slot first
        (cheap to recompute), never a main conversation's while a side slot can go."""
        if not self.setup.pins:
            return None
        held = self.slot_of(key)
        if held is not None:
            return held
        free = [i for i, s in enumerate(self.slots) if s.holder is None]
        if free:
            return free[0]
        side = [i for i, s in enumerate(self.slots) if s.holder == BACKGROUND]
        pool = side or range(len(self.slots))
        return min(pool, key=lambda i: self.slots[i].used_at)

    def enter(self, key: str, index: int | None, now: float, *,
              seed: str | None = None) -> Step:
        """``key`` takes slot ``index`` (its lock held): save the occupant first if it
        holds unsaved state, restore ``key`` if it has a file, else ``seed`` (the file of
        a conversation that starts like it: a new session's system prompt and tools come
        from there). The table assumes it all done (``done`` after the request, ``lost``
        if the engine lost its slots)."""
        if index is None or index >= len(self.slots):
            return Step(None)
        slot = self.slots[index]
        slot.used_at = now
        if slot.holder == key:
            return Step(index)
        save = saved_key = None
        if self.setup.can_save and slot.holder is not None and slot.dirty and \
                self._keeps(slot.holder):
            saved_key, save = slot.holder, self._file_for(slot.holder)
        restore = self._files.get(key) if self.setup.can_save else None
        seeded = restore is None and self.setup.can_save and seed in self._files.values()
        if restore is not None:
            self._files.move_to_end(key)
        elif seeded:
            restore = seed
        replaced, slot.holder, slot.dirty = slot.holder, key, seeded
        return Step(index, save, saved_key, restore, replaced, taken=True, seeded=seeded)

    def done(self, key: str, slot: int | None, now: float) -> None:
        """The request of ``key`` ran on ``slot``: it now holds more than any file."""
        if slot is None or slot >= len(self.slots):
            return
        held = self.slots[slot]
        held.holder, held.dirty, held.used_at = key, True, now

    def vacate(self, key: str, slot: int) -> None:
        """``key``'s entry into ``slot`` was cut short (a warm-up preempted mid-restore):
        the slot holds nothing known, and ``key`` keeps its file for the next entry."""
        if slot < len(self.slots) and self.slots[slot].holder == key:
            self.slots[slot].holder, self.slots[slot].dirty = None, False

    def release(self, key: str) -> None:
        """``key`` lives on another upstream now: it holds no slot here (the slot is
        free, not a conversation to spare) and has no file to restore."""
        for slot in self.slots:
            if slot.holder == key:
                slot.holder, slot.dirty = None, False
        self._files.pop(key, None)

    def known(self) -> set[str]:
        """Every conversation that holds a slot or has a file."""
        return {s.holder for s in self.slots if s.holder is not None} | set(self._files)

    def forget_file(self, key: str) -> None:
        """``key``'s file cannot be restored (the engine refused it)."""
        self._files.pop(key, None)

    # -- while idle, and after a restart -----------------------------------------------------

    def to_save(self, now: float, idle: float) -> list[tuple[int, str]]:
        """(slot, key) for each slot holding unsaved state, idle for ``idle`` seconds:
        saved now, an engine crash later costs a restore, not a prefill."""
        if not self.setup.can_save:
            return []
        return [(i, s.holder) for i, s in enumerate(self.slots)
                if s.holder is not None and s.dirty and self._keeps(s.holder)
                and now - s.used_at >= idle]

    def saved(self, slot: int, key: str) -> None:
        held = self.slots[slot]
        if held.holder == key:
            held.dirty = False

    def lost(self) -> list[str]:
        """The engine lost every slot (a restart): nothing is held any more. Returns the
        conversations that were held, most recent first (the ones worth warming)."""
        held = sorted((s for s in self.slots if s.holder), key=lambda s: -s.used_at)
        keys = [s.holder for s in held if s.holder is not None]
        for slot in self.slots:
            slot.holder, slot.dirty = None, False
        return keys

    def unsaved(self, slot: int) -> bool:
        """The slot holds more of its conversation than that one's file (if any)."""
        return slot < len(self.slots) and self.slots[slot].dirty

    def file_for(self, key: str) -> str:
        """The file ``key``'s state is saved to (its own, or a new or reused name)."""
        return self._file_for(key)

    def restorable(self, key: str) -> bool:
        return self.setup.can_save and key in self._files

    def holder(self, slot: int) -> str | None:
        return self.slots[slot].holder if slot < len(self.slots) else None

    def slot_of(self, key: str) -> int | None:
        return next((i for i, s in enumerate(self.slots) if s.holder == key), None)

    def place(self, key: str, slot: int) -> None:
        """``key`` is believed to be in ``slot`` (where an earlier lmsd left it)."""
        if slot < len(self.slots) and self.slot_of(key) is None:
            held = self.slots[slot]
            held.holder, held.dirty = key, True

    def adopt(self, key: str, file: str) -> None:
        """A file saved before lmsd restarted (from the store): restorable again."""
        self._files[key] = file
        while len(self._files) > self.max_files:
            self._files.popitem(last=False)

    def files(self) -> dict[str, str]:
        return dict(self._files)

    def to_json(self) -> dict[str, object]:
        return {**self.setup.to_json(), "held": [
            {"slot": i, "conversation": s.holder, "unsaved": s.dirty}
            for i, s in enumerate(self.slots)], "saved": list(self._files)}

    # -- inside --------------------------------------------------------------------------

    def _keeps(self, key: str) -> bool:
        return key != BACKGROUND

    def _file_for(self, key: str) -> str:
        """``key``'s file: its own if it has one, else a new name or the least recently
        used conversation's (whose state is then gone)."""
        if key in self._files:
            self._files.move_to_end(key)
            return self._files[key]
        used = set(self._files.values())
        if len(self._files) >= self.max_files:
            _, name = self._files.popitem(last=False)
        else:
            name = next(f"{self.prefix}-{n}.bin" for n in range(self.max_files + 1)
                        if f"{self.prefix}-{n}.bin" not in used)
        self._files[key] = name
        return name
