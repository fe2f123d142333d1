"""The keeper's per-request path on unified KV (``turns.Turns``), alone: what it asks a
llama-server with ``-np`` auto and its RAM cache (a fake one, answering ``/slots``, slot
save and restore, and the park request) when one conversation follows another. Nothing
is pinned there; lmsd saves the occupant's slot, restores a returning conversation's
file, or parks the occupant when the two start alike."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from lmsd.config import CacheSettings
from lmsd.sessions.recent import RecentRequest, RecentRequests
from lmsd.upstreams.cache.engine_cache import PARK_PROMPT
from lmsd.upstreams.cache.slots import BACKGROUND, SlotSetup, SlotTable
from lmsd.upstreams.cache.state import KeeperState
from lmsd.upstreams.cache.turns import SEED_CHARS, Turns

ONE, TWO = "s-one/main", "s-two/main"
CHAT = "/v1/chat/completions"
SHARED = "x" * (SEED_CHARS + 100)  # the system prompt two Claude Code sessions share


def body(system: str, user: str = "hi") -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "system", "content": system},
                                       {"role": "user", "content": user}]}


class FakeUnified:
    """Four slots over one KV: slot 2 holds the last request's prompt (task 9), slot 1 an
    older one (task 4), 0 and 3 are empty."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.slots = [{"id": 0, "is_processing": False, "n_prompt_tokens": 0, "id_task": 1},
                      {"id": 1, "is_processing": False, "n_prompt_tokens": 300, "id_task": 4},
                      {"id": 2, "is_processing": False, "n_prompt_tokens": 800, "id_task": 9},
                      {"id": 3, "is_processing": False, "n_prompt_tokens": 0}]

    def handle(self, request: httpx.Request) -> httpx.Response:
        action = request.url.params.get("action")
        self.log.append(f"{request.method} {request.url.path}" + (f" {action}" if action
                                                                   else ""))
        if request.url.path == "/slots":
            return httpx.Response(200, json=self.slots)
        if action == "save":
            return httpx.Response(200, json={"n_saved": 800, "n_written": 1})
        if action == "restore":
            return httpx.Response(200, json={"n_restored": 700, "n_read": 1})
        if request.url.path == "/completion":
            assert request.read() and PARK_PROMPT in request.content.decode()
            return httpx.Response(200, json={"content": "."})
        return httpx.Response(404)


class FakeUpstream:
    def __init__(self, engine: FakeUnified) -> None:
        self.client = httpx.AsyncClient(base_url="http://engine",
                                        transport=httpx.MockTransport(engine.handle))
        self.busy = 0


def unified(engine: FakeUnified, *, can_save: bool = True, occupant: str = ONE,
            unsaved: bool = True) -> tuple[Turns, KeeperState]:
    """ONE ran last (its request is remembered), and is still on the engine's slot."""
    state = KeeperState("llama", FakeUpstream(engine), CacheSettings(),  # type: ignore[arg-type]
                        RecentRequests(None))
    state.table = SlotTable(SlotSetup(slots=4, keeps_idle=False, can_save=can_save),
                            prefix="lmsd-llama")
    state.recent.note(RecentRequest("llama", ONE, CHAT, body(SHARED, "one"), time.time()))
    state.occupant, state.occupant_unsaved = occupant, unsaved
    state.real_in_flight = 1  # the request being switched to
    return Turns(state), state


async def test_a_new_conversation_saves_the_occupant_and_is_left_to_the_engine():
    engine = FakeUnified()
    turns, state = unified(engine)
    await turns.switch(TWO, body(SHARED, "two"))
    # the occupant's slot is the idle one with the highest task: 2
    assert engine.log == ["GET /slots", "POST /slots/2 save"]
    assert state.counts["saved"] == 1 and not state.occupant_unsaved
    assert state.table is not None and state.table.restorable(ONE)
    assert state.counts["parked"] == 0  # parking would hand it ONE's cached state
    assert state.occupant == ONE


async def test_a_returning_conversation_with_a_file_is_restored_into_an_empty_slot():
    engine = FakeUnified()
    turns, state = unified(engine, unsaved=False)
    assert state.table is not None
    state.table.adopt(TWO, "lmsd-llama-two.bin")
    state.recent.note(RecentRequest("llama", TWO, CHAT, body(SHARED, "two"), time.time()))
    state.lost.add(TWO)
    await turns.switch(TWO, body(SHARED, "two"))
    assert engine.log == ["GET /slots", "POST /slots/0 restore"]  # the first empty one
    assert state.counts["restored"] == 1 and state.counts["parked"] == 0
    assert (state.occupant, state.occupant_unsaved) == (TWO, False)
    assert TWO not in state.lost


async def test_a_returning_conversation_without_a_file_parks_a_similar_occupant():
    engine = FakeUnified()
    turns, state = unified(engine, can_save=False)
    state.recent.note(RecentRequest("llama", TWO, CHAT, body(SHARED, "two"), time.time()))
    await turns.switch(TWO, body(SHARED, "two"))
    assert engine.log == ["POST /completion"]  # nothing to save to, nothing to restore
    assert state.counts["parked"] == 1 and state.occupant is None


async def test_a_returning_conversation_that_starts_otherwise_is_left_to_the_engine():
    engine = FakeUnified()
    turns, state = unified(engine, unsaved=False)
    state.recent.note(RecentRequest("llama", TWO, CHAT, body("another prompt", "two"),
                                    time.time()))
    await turns.switch(TWO, body("another prompt", "two"))
    assert engine.log == []  # its slot choice keeps both apart
    assert state.occupant == ONE


@pytest.mark.parametrize("case", ["same", "in_flight", "none"])
async def test_no_switch_when_the_occupant_is_this_one_unknown_or_another_request_runs(case):
    engine = FakeUnified()
    turns, state = unified(engine)
    state.recent.note(RecentRequest("llama", TWO, CHAT, body(SHARED, "two"), time.time()))
    if case == "in_flight":
        state.real_in_flight = 2  # the engine's last slot may be the other request's
    if case == "none":
        state.occupant = None
    await turns.switch(ONE if case == "same" else TWO, body(SHARED, "two"))
    assert engine.log == [] and state.counts["saved"] == state.counts["parked"] == 0


async def test_a_turn_leaves_its_conversation_as_the_occupant_and_side_requests_unsaved():
    engine = FakeUnified()
    turns, state = unified(engine, occupant=TWO, unsaved=False)
    async with turns.turn(ONE, body(SHARED, "one"), path=CHAT) as sent:
        assert "id_slot" not in sent  # nothing is pinned on unified KV
    assert (state.occupant, state.occupant_unsaved) == (ONE, True)
    assert state.real_in_flight == 1 and state.wake.is_set()
    engine.log.clear()
    state.real_in_flight = 0
    async with turns.turn(BACKGROUND, body("title"), path=CHAT):
        pass
    assert engine.log == ["GET /slots", "POST /slots/2 save"]  # ONE saved at the switch
    assert (state.occupant, state.occupant_unsaved) == (BACKGROUND, False)
