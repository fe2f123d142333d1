"""The keeper's moves on an engine's slots: save a slot to a conversation's file, restore
one, take a slot for a conversation (save its occupant, restore ours). A real turn
(``turns.py``) and a warm-up (``background.py``) make the same moves, so they live here,
each keeping the shared state (``state.py``: table, counts, restores) true and saying
what it did (``cache.saved``, ``cache.restored``, ``cache.slot_failed``). The caller holds
the slot's lock where there is one."""

from __future__ import annotations

from typing import Any

import trio

from ...log import event
from .engine_cache import occupied_slot, slot_action
from .slots import BACKGROUND, Step
from .state import KeeperState


async def act(state: KeeperState, index: int, action: str, file: str
              ) -> dict[str, Any] | None:
    """The engine's figures (tokens, bytes, ms), or None when it failed."""
    error, figures = await slot_action(state.upstream.client, index, action, file)
    if error is not None:
        event("cache.slot_failed", level=30, upstream=state.name, slot=index,
              action=action, file=file, error=error)
        return None
    return figures


async def save(state: KeeperState, index: int, key: str, why: str) -> None:
    """Save slot ``index`` (its lock held) as ``key``'s file."""
    table = state.table
    assert table is not None
    file = table.file_for(key)
    if (saved := await act(state, index, "save", file)) is not None:
        state.counts["saved"] += 1
        table.saved(index, key)
        state.note_file(key, index, file)
        event("cache.saved", upstream=state.name, slot=index, conversation=key,
              file=file, why=why, **saved)
    else:
        table.forget_file(key)


async def enter(state: KeeperState, conversation: str, index: int, seed: str | None = None,
                model: str | None = None) -> bool:
    """Take slot ``index`` (its lock held): save its occupant, restore ours (or the
    ``seed`` a new conversation starts from), unless restores of ``model`` proved
    cosmetic (``restores.py``). True when a file of its own was restored."""
    table = state.table
    assert table is not None
    step = table.enter(conversation, index, trio.current_time(), seed=seed)
    try:
        return await _moves(state, conversation, index, step, model)
    except trio.Cancelled:
        # Cut short (a real request preempts a warm-up): what the table assumed done may
        # not be, so the slot is nobody's and the next entry restores the file again.
        table.vacate(conversation, index)
        raise


async def _moves(state: KeeperState, conversation: str, index: int, step: Step,
                 model: str | None) -> bool:
    """The saves and restores ``enter``'s step asks for."""
    table = state.table
    assert table is not None
    if step.taken:
        event("cache.pinned", upstream=state.name, slot=index, conversation=conversation,
              replaced=step.replaced, restore=step.restore is not None,
              seeded=step.seeded)
        if step.replaced and step.replaced != BACKGROUND and not table.restorable(
                step.replaced):
            state.misses.cost(step.replaced, f"its slot {index} went to {conversation}")
    if step.save and step.saved_key:
        if (saved := await act(state, index, "save", step.save)) is not None:
            state.counts["saved"] += 1
            table.saved(index, step.saved_key)
            state.note_file(step.saved_key, index, step.save)
            event("cache.saved", upstream=state.name, slot=index,
                  conversation=step.saved_key, file=step.save, why="switch", **saved)
        else:
            table.forget_file(step.saved_key)
    if step.restore and state.restores.replay_instead(model):
        state.counts["restores_skipped"] += 1  # it would restore nothing: see restores.py
    elif step.restore:
        if (restored := await act(state, index, "restore", step.restore)) is not None:
            state.counts["restored"] += 1
            event("cache.restored", upstream=state.name, slot=index,
                  conversation=conversation, file=step.restore, seeded=step.seeded,
                  **restored)
            if not step.seeded:
                state.restores.restored(conversation, model or "", restored.get("tokens"))
                return True
        else:
            state.counts["restore_failed"] += 1
            if not step.seeded:
                table.forget_file(conversation)
    return False


# -- unified KV: no slot is lmsd's, the engine's last request left its prompt on one ------


async def save_occupant(state: KeeperState, why: str) -> None:
    """Save the slot the occupant's last request left (found in ``/slots``) to the
    occupant's file."""
    table, key = state.table, state.occupant
    if table is None or key is None or key == BACKGROUND:
        return
    index, why_not = await occupied_slot(state.upstream.client)
    if index is None:
        event("cache.slot_failed", level=30, upstream=state.name, slot=None,
              action="save", conversation=key, why=why, error=why_not)
        return
    file = table.file_for(key)
    if (saved := await act(state, index, "save", file)) is not None:
        state.counts["saved"] += 1
        state.occupant_unsaved = False
        state.note_file(key, index, file)
        event("cache.saved", upstream=state.name, slot=index, conversation=key,
              file=file, why=why, **saved)
    else:
        table.forget_file(key)


async def restore_file(state: KeeperState, conversation: str, model: str) -> bool:
    """``conversation``'s file into an empty slot, where it has one (and restores of
    ``model`` are not cosmetic): it becomes the occupant. True when restored."""
    table = state.table
    state.lost.discard(conversation)
    if table is None or not table.restorable(conversation) or \
            state.restores.replay_instead(model):
        return False
    index, _ = await occupied_slot(state.upstream.client, empty=True)
    file = table.files().get(conversation)
    if index is None or file is None:
        return False
    if (restored := await act(state, index, "restore", file)) is None:
        state.counts["restore_failed"] += 1
        table.forget_file(conversation)
        return False
    state.counts["restored"] += 1
    state.occupant, state.occupant_unsaved = conversation, False
    event("cache.restored", upstream=state.name, slot=index, conversation=conversation,
          file=file, seeded=False, **restored)
    state.restores.restored(conversation, model, restored.get("tokens"))
    return True
