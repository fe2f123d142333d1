"""A restore that did not restore, and a restart seen on unified KV. The judgement is pure
(``cache/restores.py``: restored tokens and the next turn's counters in, a decision out); the
keeper is driven against a fake llama-server (``/slots`` save, restore, a chat completion
with ``timings``) whose restore can be made a no-op, as llama.cpp's is on sliding-window
and hybrid models."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx
import pytest
import trio

from lmsd.config import CacheSettings, Settings
from lmsd.protocol.pivot import Usage
from lmsd.sessions.recent import RecentRequest, RecentRequests
from lmsd.upstreams.cache.keeper import CacheKeeper
from lmsd.upstreams.cache.moves import save
from lmsd.upstreams.cache.restores import Restores, judge
from lmsd.upstreams.cache.slots import SlotSetup, SlotTable

CONV = "s-one/main"
MODEL = "tiny-swa"
PROMPT = 4000  # tokens of the conversation's last request, in the fake engine


# -- the judgement (pure) ---------------------------------------------------------------------


def test_a_turn_that_reuses_the_restored_tokens_judges_the_restore_effective():
    assert judge(4000, prefilled=30, cached=4000) is True
    assert judge(4000, prefilled=900, cached=3990) is True  # turns since the save: new


def test_a_turn_that_prefills_what_was_restored_judges_it_ineffective():
    assert judge(4000, prefilled=4030, cached=0) is False
    assert judge(4000, prefilled=3000, cached=1000) is False


def test_nothing_is_judged_on_a_tiny_restore_or_without_counters():
    assert judge(100, prefilled=100, cached=0) is None
    assert judge(4000, prefilled=None, cached=0) is None
    assert judge(4000, prefilled=1500, cached=0) is None  # a shorter prompt: compacted


def test_one_ineffective_restore_switches_that_model_to_replays_only():
    restores = Restores()
    restores.restored(CONV, MODEL, 4000)
    first = restores.turn(CONV, 4030, 0)
    assert first is not None and first.switched and first.model == MODEL
    assert restores.replay_instead(MODEL) and not restores.replay_instead("dense")
    restores.restored(CONV, MODEL, 4000)
    again = restores.turn(CONV, 4030, 0)
    assert again is not None and not again.switched  # said once as a switch
    assert restores.to_json()[MODEL]["warm_up"] == "replay"  # type: ignore[index]
    assert "tiny-swa" in (restores.summary() or "")


def test_an_effective_restore_keeps_restoring_and_a_turn_is_judged_once():
    restores = Restores()
    restores.restored(CONV, "dense", 4000)
    assert restores.turn(CONV, 20, 4000) is None
    assert restores.turn(CONV, 4000, 0) is None  # nothing pending any more
    assert not restores.replay_instead("dense") and restores.summary() is None
    assert restores.models["dense"].effective == 1


def test_an_ineffective_replay_is_reported_but_changes_nothing():
    restores = Restores()
    restores.restored(CONV, MODEL, 4000, how="replay")
    bad = restores.turn(CONV, 4000, 0)
    assert bad is not None and bad.how == "replay" and not bad.switched
    assert not restores.replay_instead(MODEL)


# -- the keeper against a fake llama-server -----------------------------------------------------


class FakeLlama:
    """One slot, files on 'disk', a task counter; ``noop_restore``: a restore answers as
    llama-server does (tokens restored) but the next prompt is recomputed anyway."""

    def __init__(self, noop_restore: bool, slots: int = 1) -> None:
        self.noop_restore = noop_restore
        self.slots = slots
        self.held = 0  # tokens of the conversation the slot holds
        self.files: dict[str, int] = {}
        self.task = 0
        self.log: list[str] = []
        self.prefilled: list[int] = []

    def restart(self) -> None:
        self.held, self.task = 0, 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        path, action = request.url.path, request.url.params.get("action")
        self.log.append(f"{request.method} {path}" + (f" {action}" if action else ""))
        if request.method == "GET" and path == "/slots":
            slot: dict[str, Any] = {"id": 0, "is_processing": False}
            if self.task:
                slot["id_task"] = self.task - 1
            return httpx.Response(200, json=[slot])
        if path == "/props":
            return httpx.Response(200, json={"total_slots": self.slots})
        body = json.loads(request.content or b"{}")
        if action and not body.get("filename"):  # lmsd's probe: can it save?
            return httpx.Response(400, json={"error": "Invalid filename"})
        if action == "save":
            self.files[body["filename"]] = self.held
            return httpx.Response(200, json={"n_saved": self.held, "n_written": 1})
        if action == "restore":
            tokens = self.files[body["filename"]]
            self.held = 0 if self.noop_restore else tokens
            return httpx.Response(200, json={"n_restored": tokens, "n_read": 1})
        if path == "/v1/chat/completions":  # the conversation's prompt, or another one
            self.task += 1
            prompt = PROMPT if body.get("model") == MODEL else 10
            cached = min(self.held, prompt) if prompt == PROMPT else 0
            self.held = prompt if prompt == PROMPT else 0
            self.prefilled.append(prompt - cached)
            return httpx.Response(200, json={
                "choices": [{"message": {"content": "ok"}, "finish_reason": "length"}],
                "timings": {"prompt_n": prompt - cached, "cache_n": cached}})
        return httpx.Response(404)


class FakeUpstream:
    def __init__(self, engine: FakeLlama) -> None:
        self.client = httpx.AsyncClient(base_url="http://engine",
                                        transport=httpx.MockTransport(engine.handle))
        self.read_timeout = 30.0
        self.busy = 0

    def hold_background(self) -> bool:
        return False


def keeper_on(engine: FakeLlama, setup: SlotSetup) -> tuple[CacheKeeper, RecentRequests]:
    recent = RecentRequests(None)
    keeper = CacheKeeper("llama", FakeUpstream(engine), CacheSettings(),  # type: ignore[arg-type]
                         recent=recent)
    keeper.state.table = SlotTable(setup, prefix="lmsd-llama")
    keeper.watch.learned = keeper.watch._ever_learned = True
    recent.note(RecentRequest("llama", CONV, "/v1/chat/completions",
                              {"model": MODEL, "messages": [{"role": "user", "content": "x"}]},
                              time.time()))
    return keeper, recent


def fields(caplog: Any, name: str) -> list[dict[str, Any]]:
    return [r.lmsd_fields for r in caplog.records if r.getMessage() == name]


async def restart_and_rewarm(engine: FakeLlama, keeper: CacheKeeper) -> None:
    """The engine restarts; lmsd notices and warms the conversation again."""
    engine.restart()
    await keeper.background.check()
    assert keeper.state.queue == [CONV]
    await keeper.background.warm_next()


async def saved_conversation(engine: FakeLlama, keeper: CacheKeeper) -> None:
    """One real turn on slot 0, then the idle save."""
    async with keeper.turn(CONV, {"model": MODEL, "messages": []},
                           path="/v1/chat/completions") as sent:
        await keeper.state.upstream.client.post("/v1/chat/completions", json=sent)
    await keeper.background.check()  # sees task 0
    assert keeper.state.table is not None
    async with keeper.state.locks[0]:
        await save(keeper.state, 0, CONV, "idle")


@pytest.mark.parametrize("noop", [False, True])
async def test_after_a_restart_a_cosmetic_restore_is_seen_and_replays_take_over(
        caplog, noop):
    caplog.set_level(logging.INFO, logger="lmsd")
    engine = FakeLlama(noop_restore=noop)
    keeper, _ = keeper_on(engine, SlotSetup(slots=1, can_save=True))
    keeper.state.locks = [trio.Lock()]
    await saved_conversation(engine, keeper)
    await restart_and_rewarm(engine, keeper)
    assert "POST /slots/0 restore" in engine.log
    # the replay after the restore: one token's prefill where the restore worked
    assert engine.prefilled[-1] == (PROMPT if noop else 0)
    bad = fields(caplog, "cache.restore_ineffective")
    block = keeper.to_json()
    if not noop:
        assert bad == [] and block["restores"][MODEL]["effective"] == 1
        assert block["restore"] == "no restore judged ineffective"
        return
    assert [(b["model"], b["restored_tokens"], b["prefilled_tokens"], b["switched_to_replay"])
            for b in bad] == [(MODEL, PROMPT, PROMPT, True)]
    assert block["restores"][MODEL]["warm_up"] == "replay"
    assert "replay instead" in block["restore"]
    # the next restart: no restore at all, the replay warms the conversation
    engine.log.clear()
    await restart_and_rewarm(engine, keeper)
    assert "POST /slots/0 restore" not in engine.log
    assert "POST /v1/chat/completions" in engine.log
    assert keeper.counts["restores_skipped"] == 1


async def test_a_real_turn_after_a_cosmetic_restore_is_judged_by_its_usage(caplog):
    caplog.set_level(logging.INFO, logger="lmsd")
    keeper, _ = keeper_on(FakeLlama(noop_restore=True), SlotSetup(slots=1, can_save=True))
    keeper.restores.restored(CONV, MODEL, 4000)
    keeper.prefilled(CONV, Usage(input_tokens=4040, prefilled_tokens=4040))
    [bad] = fields(caplog, "cache.restore_ineffective")
    assert bad["switched_to_replay"] and bad["cached_tokens"] == 0


async def test_a_restart_is_seen_on_unified_kv_where_no_slot_is_pinned(caplog):
    """-np 4 --kv-unified: lmsd pins nothing, so no slot it left is there to be found
    empty; the engine's task ids starting again give the restart away."""
    caplog.set_level(logging.INFO, logger="lmsd")
    engine = FakeLlama(noop_restore=False, slots=4)
    keeper, _ = keeper_on(engine, SlotSetup(slots=4, keeps_idle=False))
    await keeper.background.check()
    for _ in range(3):
        await keeper.state.upstream.client.post("/v1/chat/completions", json={})
    await keeper.background.check()
    assert fields(caplog, "cache.lost") == []
    engine.restart()
    await keeper.state.upstream.client.post("/v1/chat/completions", json={})  # one task since
    await keeper.background.check()
    [lost] = fields(caplog, "cache.lost")
    assert "restarted" in lost["why"] and lost["rewarm"] == [CONV]
    await keeper.background.warm_next()
    assert engine.prefilled[-1] == PROMPT  # the replay, with no slot named


async def test_doctor_reads_what_the_running_daemon_found_of_restores():
    from lmsd.ops.doctor import daemon_upstreams

    status = {"upstreams": [{"name": "llama", "url": "http://127.0.0.1:8080", "kind": "auto",
                             "cache": {"restore": "slot restore saved no prefill on m: "
                                       "warmed by a replay instead",
                                       "restores": {"m": {"warm_up": "replay"}}}}]}
    local = httpx.AsyncClient(transport=httpx.MockTransport(
        lambda request: httpx.Response(200, json=status)))
    learned: dict[str, str] = {}
    used = await daemon_upstreams(Settings(), local, learned)
    assert used is not None and learned == {"llama": status["upstreams"][0]["cache"]["restore"]}


async def test_a_warm_up_preempted_mid_restore_leaves_the_file_for_the_next_turn():
    """A real turn cancels a warm-up while its restore is under way (the swap-back race:
    the turn that started the engine arrives with the re-warm): the table must not think
    the slot holds the conversation, so the turn restores the file and prefills nothing."""
    engine = FakeLlama(noop_restore=False)
    keeper, _ = keeper_on(engine, SlotSetup(slots=1, can_save=True))
    keeper.state.locks = [trio.Lock()]
    await saved_conversation(engine, keeper)
    engine.restart()
    await keeper.background.check()
    assert keeper.state.queue == [CONV]
    first = trio.Event()

    async def slow_first_restore(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("action") == "restore" and not first.is_set():
            first.set()
            await trio.sleep_forever()  # cancelled by the real turn
        return engine.handle(request)

    keeper.state.upstream.client = httpx.AsyncClient(
        base_url="http://engine", transport=httpx.MockTransport(slow_first_restore))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keeper.background.warm_next)
        await first.wait()
        assert keeper.state.warming is not None
        keeper.state.warming[1].cancel()  # what a real request does to a warm-up
    engine.log.clear()
    async with keeper.turn(CONV, {"model": MODEL, "messages": []},
                           path="/v1/chat/completions") as sent:
        await keeper.state.upstream.client.post("/v1/chat/completions", json=sent)
    assert "POST /slots/0 restore" in engine.log, engine.log
    assert engine.prefilled[-1] == 0, "the file was restored: nothing prefilled"
