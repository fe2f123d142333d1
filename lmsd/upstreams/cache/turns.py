"""The keeper's per-request path: what happens around one request to the engine
(``turn``) and after it (``prefilled``). A real request preempts a warm-up; on an engine
lmsd steers it takes the conversation's slot (saving the slot's other occupant and
restoring this conversation's file, or seeding a new one from a similar conversation's
file) and goes with ``id_slot``; on unified KV it saves the last conversation's slot and
restores or parks around a switch (``switch``). Never waits for the engine to be learned:
the background loop (``background.py``) does that."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from ...log import event
from ...protocol.pivot import Usage
from ...protocol.warmup import shared_start
from .engine_cache import park
from .moves import enter, restore_file, save, save_occupant
from .slots import BACKGROUND
from .state import KeeperState, model_of

#: A new conversation starts from another's slot file when their requests' starts (system
#: prompt, tools) share this many characters: two Claude Code sessions share thousands.
SEED_CHARS = 2000


class Turns:
    def __init__(self, state: KeeperState) -> None:
        self.state = state

    @asynccontextmanager
    async def turn(self, conversation: str, body: dict[str, Any],
                   full: dict[str, Any] | None = None, *, path: str, can_pin: bool = True
                   ) -> AsyncIterator[dict[str, Any]]:
        """Send ``body`` for ``conversation`` (``BACKGROUND`` for side requests): a real
        request preempts a warm-up; on a steered engine it takes its slot (saving and
        restoring around it) and goes with ``id_slot`` where ``can_pin`` (the endpoint
        reads it). ``full``: the whole-history body, remembered for a re-warm."""
        state = self.state
        state.real_in_flight += 1
        self.preempt(conversation)
        try:
            table = state.table  # learned at startup and in the background, never waited for
            index = table.choose(conversation) if table is not None else None
            if table is not None and table.setup.unified:
                await self.switch(conversation, body)
                try:
                    yield body
                finally:
                    state.occupant = conversation
                    state.occupant_unsaved = conversation != BACKGROUND
            elif index is None or (not can_pin and table is not None and
                                   table.setup.slots > 1):
                yield body
            else:
                async with state.locks[index]:
                    assert table is not None
                    seed = await self.seed(conversation, body, index)
                    await enter(state, conversation, index, seed=seed, model=model_of(body))
                    try:
                        yield {**body, "id_slot": index} if can_pin else body
                    finally:
                        table.done(conversation, index, trio.current_time())
            if conversation != BACKGROUND:
                state.remember(conversation, path, full or body, index)
        finally:
            state.real_in_flight -= 1
            state.last_real = trio.current_time()
            state.wake.set()

    def preempt(self, conversation: str) -> None:
        """A real request cancels the running warm-up (warmed again once the user is
        idle, unless it is this conversation: its own request warms it)."""
        state = self.state
        if state.warming is not None:
            warming, scope = state.warming
            scope.cancel()
            state.counts["warmups_preempted"] += 1
            event("cache.warmup_preempted", upstream=state.name, conversation=warming,
                  by=conversation)
            if warming != conversation:
                state.queue.append(warming)
        if conversation in state.queue:
            state.queue.remove(conversation)

    async def seed(self, conversation: str, body: dict[str, Any], index: int) -> str | None:
        """For a conversation with no file of its own, taking slot ``index``: the file of
        the one whose request starts most like this one (``SEED_CHARS`` at least),
        restored first so that the shared system prompt and tools are not prefilled
        again on another slot. A conversation that sits unsaved on an idle slot is saved
        for it now (its lock free: never waited for)."""
        state, table = self.state, self.state.table
        if table is None or not table.setup.can_save or conversation == BACKGROUND or \
                table.restorable(conversation) or table.slot_of(conversation) is not None \
                or state.recent.get(state.name, conversation) is not None:
            return None  # not a new conversation
        candidates = set(table.files()) | {table.holder(i) for i in range(len(table.slots))
                                           if i != index}
        best, best_shared = None, SEED_CHARS - 1
        for other in candidates - {None, BACKGROUND, conversation}:
            recent = state.recent.get(state.name, other) if other else None
            if recent is not None and (shared := shared_start(body, recent.body)) > \
                    best_shared:
                best, best_shared = other, shared
        if best is None:
            return None
        held = table.slot_of(best)
        if held is not None and table.unsaved(held) and not state.locks[held].locked():
            async with state.locks[held]:
                await save(state, held, best, "seed")
        return table.files().get(best)

    async def switch(self, conversation: str, body: dict[str, Any]) -> None:
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
        state = self.state
        occupant = state.occupant
        if occupant is None or occupant == conversation or state.real_in_flight > 1:
            return
        table = state.table
        if state.occupant_unsaved and table is not None and table.setup.can_save:
            await save_occupant(state, "switch")
        if conversation == BACKGROUND or state.recent.get(state.name, conversation) is None:
            return
        if await restore_file(state, conversation, model_of(body)):
            return
        kept = state.recent.get(state.name, occupant)
        if kept is None or shared_start(body, kept.body) < SEED_CHARS:
            return  # the engine's own slot choice keeps both (the RAM cache on a miss)
        error = await park(state.upstream.client)
        if error is None:
            state.counts["parked"] += 1
        event("cache.parked", upstream=state.name, conversation=occupant,
              before=conversation, error=error, level=30 if error else 20)
        state.occupant = None

    def prefilled(self, conversation: str, usage: Usage | None,
                  expected: int | None = None) -> None:
        """After a turn: what the engine prefilled (a miss is reported, with its cause);
        ``expected``: what a chained turn prefills by design."""
        state = self.state
        if usage is not None and state.judge(conversation, usage.prefilled_tokens,
                                             usage.cached_tokens):
            state.misses.cost(conversation, "the engine restored its slot file but kept "
                              "none of it (llama.cpp on a sliding-window or hybrid model)")
        state.misses.turn(conversation, usage, expected)
