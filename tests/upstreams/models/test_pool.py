"""The pool with a loader that records what it is asked (no engine): one load per model
however many requests wait, a failed load told to every waiter, room made before a load,
a load that waits for the requests in flight and gives up after ``ROOM_WAIT`` with the
reason, and the idle ttl (trio's autojump clock: no real waiting)."""

from __future__ import annotations

import pytest
import trio

from lmsd.config.models import ModelEntry
from lmsd.protocol.failures import ModelUnavailable, Overloaded
from lmsd.upstreams.models.pool import ROOM_WAIT, Listed, ModelPool

GiB = 1024**3


class Box:
    """A loader over a dict of models: ``loaded`` names, each ``memory`` bytes."""

    def __init__(self, *names: str, loaded: tuple[str, ...] = (), memory: int = 10 * GiB,
                 fail: str | None = None) -> None:
        self.names, self.loaded, self.memory = names, set(loaded), memory
        self.fail = fail
        self.log: list[tuple[str, str]] = []
        self.gate = trio.Event()
        self.gate.set()

    def listing(self) -> dict[str, Listed]:
        return {n: Listed(n, n in self.loaded, self.memory) for n in self.names}

    def is_loaded(self, model: str) -> bool:
        return model in self.loaded

    async def load(self, model: str) -> None:
        self.log.append(("load", model))
        await self.gate.wait()
        if self.fail:
            raise ModelUnavailable(self.fail)
        self.loaded.add(model)

    async def unload(self, model: str) -> None:
        self.log.append(("unload", model))
        self.loaded.discard(model)


async def test_many_requests_for_one_cold_model_make_one_load():
    box = Box("a", "b", loaded=("a",))
    box.gate = trio.Event()
    pool = ModelPool("box", box)
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(pool.ensure, "b")
        await trio.testing.wait_all_tasks_blocked()
        box.gate.set()
    assert box.log == [("load", "b")]
    assert pool.rows()[1]["loads"] == 1 and pool.rows()[1]["by_lmsd"]


async def test_a_failed_load_is_every_waiters_reason_and_the_next_request_tries_again():
    box = Box("a", fail="the engine ran out of memory")
    box.gate = trio.Event()
    pool = ModelPool("box", box)
    told: list[str] = []

    async def ask() -> None:
        with pytest.raises(ModelUnavailable) as raised:
            await pool.ensure("a")
        told.append(raised.value.message)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        box.gate.set()
    assert told == ["the engine ran out of memory"] * 3
    assert pool.rows()[0]["state"] == "failed"
    box.fail = None
    await pool.ensure("a")
    assert box.log == [("load", "a"), ("load", "a")]


async def test_room_is_made_before_the_load():
    box = Box("a", "b", loaded=("a",))
    pool = ModelPool("box", box, budget=15 * GiB)
    await pool.ensure("b")
    assert box.log == [("unload", "a"), ("load", "b")]


async def test_a_load_waits_for_the_request_in_flight_then_makes_room():
    box = Box("a", "b", loaded=("a",))
    pool = ModelPool("box", box, budget=15 * GiB)
    async with trio.open_nursery() as nursery:
        with pool.use("a"):
            nursery.start_soon(pool.ensure, "b")
            await trio.testing.wait_all_tasks_blocked()
            assert box.log == [], "nothing unloaded under a request"
    assert box.log == [("unload", "a"), ("load", "b")]


async def test_a_load_that_never_gets_room_gives_up_naming_the_busy_model(autojump_clock):
    box = Box("a", "b", loaded=("a",))
    pool = ModelPool("box", box, budget=15 * GiB)
    with pool.use("a"), pytest.raises(Overloaded) as raised:
        await pool.ensure("b")
    assert f"within {ROOM_WAIT:g} s: requests on a kept running" in raised.value.message
    assert box.log == []


async def test_an_idle_model_lmsd_loaded_leaves_after_its_ttl(autojump_clock):
    box = Box("mine", "users", loaded=("users",))
    pool = ModelPool("box", box, ttl=60,
                     entries=[ModelEntry("users", ttl=60), ModelEntry("forever", ttl=0)])
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        await pool.ensure("mine")
        with pool.use("mine"):
            await trio.sleep(120)  # in use: never idle
        assert ("unload", "mine") not in box.log
        await trio.sleep(80)
        nursery.cancel_scope.cancel()
    assert box.log == [("load", "mine"), ("unload", "mine")]
    assert "users" in box.loaded, "a model the user loaded is not lmsd's to unload"
