"""How the keeper tells that llama-server restarted (``cache/engine_watch.py``), alone: by its
task ids going back (every slot setup, unified KV included), or by a slot lmsd left
holding a conversation showing no task. Pure where it can be; ``look`` against a fake
``/slots``."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from lmsd.config import CacheSettings
from lmsd.sessions.recent import RecentRequests
from lmsd.upstreams.cache.engine_watch import EngineWatch, TaskIds, emptied
from lmsd.upstreams.cache.slots import SlotSetup, SlotTable
from lmsd.upstreams.cache.state import KeeperState


def slots(*tasks: int | None) -> list[dict[str, Any]]:
    return [{"id": i} | ({"id_task": t} if t is not None else {}) for i, t in enumerate(tasks)]


def test_task_ids_that_only_grow_are_no_restart():
    ids = TaskIds()
    assert not ids.went_back(slots(None, None))  # a fresh engine: nothing seen yet
    assert not ids.went_back(slots(3, None))
    assert not ids.went_back(slots(3, 7))
    assert not ids.went_back(slots(7, 7))  # the same: idle
    assert ids.high == 7


def test_task_ids_going_back_or_vanishing_are_a_restart():
    ids = TaskIds()
    ids.went_back(slots(12, 40))
    assert ids.went_back(slots(0, None))  # numbered from 0 again
    assert not ids.went_back(slots(1, None))  # then growing from there
    assert ids.went_back(slots(None, None))  # none at all after there was one
    assert not ids.went_back(["not a slot", {"id_task": "7"}])  # nothing to judge


def test_a_slot_lmsd_left_filled_that_shows_no_task_is_a_restart():
    table = SlotTable(SlotSetup(slots=2, keeps_idle=True))
    locks = [trio.Lock(), trio.Lock()]
    assert not emptied(table, locks, slots(None, None))  # lmsd left nothing there
    table.take("s-one/main", 1.0)
    index = table.slot_of("s-one/main")
    assert index is not None
    shown: list[int | None] = [5, 5]
    shown[index] = None
    assert emptied(table, locks, slots(*shown))
    assert not emptied(table, locks, slots(5, 5))


async def test_a_slot_whose_request_runs_is_not_judged():
    table = SlotTable(SlotSetup(slots=1))
    table.take("s-one/main", 1.0)
    lock = trio.Lock()
    async with lock:  # lmsd's request on it: the slot shows no task until it starts
        assert not emptied(table, [lock], slots(None))


class FakeUpstream:
    def __init__(self, answer: list[list[Any] | None]) -> None:
        def handle(request: httpx.Request) -> httpx.Response:
            shown = answer.pop(0)
            if shown is None:
                raise httpx.ConnectError("refused")
            return httpx.Response(200, json=shown)
        self.client = httpx.AsyncClient(base_url="http://engine",
                                        transport=httpx.MockTransport(handle))
        self.busy = 0

    def hold_background(self) -> bool:
        return False


async def test_look_says_why_the_engine_lost_its_slots_and_whether_it_answers():
    answers: list[list[Any] | None] = [slots(4, 9), slots(9, 10), None, slots(0, None)]
    state = KeeperState("llama", FakeUpstream(answers), CacheSettings(),  # type: ignore[arg-type]
                        RecentRequests(None))
    state.table = SlotTable(SlotSetup(slots=2, keeps_idle=False))  # unified: nothing pinned
    watch = EngineWatch(state)
    watch.learned = True
    assert await watch.look() is None and await watch.look() is None
    assert await watch.look() is None and not watch.reachable
    assert await watch.look() == "the engine restarted (its task ids started again)"
    assert watch.reachable and answers == []


async def test_a_restart_before_any_look_is_seen_from_lmsds_last_request():
    """Unified KV: lmsd's request ran, and the engine restarted before the background's
    first look recorded its task ids (a quick restart: test_keep_warm's unified restart
    timed out on it in CI). No slot shows a task although lmsd's last request left its
    prompt there: a restart. Without a request of lmsd's, an engine that ran nothing yet
    is not one."""
    answers: list[list[Any] | None] = [slots(None, None), slots(None, None)]
    state = KeeperState("llama", FakeUpstream(answers), CacheSettings(),  # type: ignore[arg-type]
                        RecentRequests(None))
    state.table = SlotTable(SlotSetup(slots=2, keeps_idle=False))
    watch = EngineWatch(state)
    watch.learned = True
    assert await watch.look() is None, "nothing of lmsd's ran: a fresh engine"
    state.occupant = "mmmm/main"  # lmsd's turn ran; no look saw its task
    assert await watch.look() == \
        "the engine restarted (no slot shows the task lmsd's last request ran)"
