"""Keeping the cache warm on a real llama-server (``keep_warm``): mechanism tests, no
timing. What the engine prefilled is read from the engine itself: its log's
``prompt eval time = ... / N tokens`` line for each task (``/slots`` resets its counters
when a task ends), and ``/slots``' ``n_prompt_tokens`` for the prompt a slot holds."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import trio

from tests.engine.llama_server import start_llama_server
from tests.engine.server import MODEL_ALIAS
from tests.support.daemon import admin_get

pytestmark = pytest.mark.engine
#: About 1.2k tokens of stable system prompt: a miss is unmistakable in the counts.
SYSTEM = " ".join(f"Rule {n}: keep the code tidy, small and tested." for n in range(120))


def body(session: str, turns: int, *, model: str = "claude-opus-5-5",
         system: str = SYSTEM) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    for n in range(turns):
        messages.append({"role": "user", "content": f"{session} asks question {n}"})
        if n + 1 < turns:
            messages.append({"role": "assistant", "content": f"answer {n}"})
    return {"model": model, "max_tokens": 4, "system": system, "messages": messages,
            "metadata": {"user_id": f"user_x_account__session_{session}"}}


async def turn(http: httpx.AsyncClient, session: str, turns: int, **kw: Any) -> None:
    answer = await http.post("/v1/messages", json=body(session, turns, **kw))
    assert answer.status_code == 200, answer.text


async def last_task(engine: str, slot: int = 0) -> dict[str, Any]:
    """The engine's own account of what ``slot`` holds."""
    async with httpx.AsyncClient(base_url=engine) as http:
        return (await http.get("/slots")).json()[slot]


async def prefilled(engine: Any) -> list[int]:
    """Tokens the engine computed for each task so far, from its own log, read once the
    log shows the last task an idle slot names in ``/slots``: llama.cpp writes its log
    from a thread of its own, so a task's line can come after its answer (read at once,
    the last figure was sometimes the task before)."""
    async with httpx.AsyncClient(base_url=engine.url) as http:
        slots = (await http.get("/slots")).json()
    last = max((s["id_task"] for s in slots if not s.get("is_processing")
                and isinstance(s.get("id_task"), int)), default=None)
    shown = re.compile(rf"\| task {last} \| prompt eval time")
    with trio.move_on_after(30):  # a task cancelled mid-prefill prints no line
        while last is not None and not shown.search(
                engine.log_path.read_text(errors="replace")):
            await trio.sleep(0.05)
    text = engine.log_path.read_text(errors="replace")
    return [int(n) for n in re.findall(r"prompt eval time = .*? / +(\d+) tokens", text)]


async def wait_event(server: Any, kind: str, **fields: Any) -> dict[str, Any]:
    with trio.fail_after(120):
        while True:
            for e in server.bus.recent:
                if e["type"] == kind and all(e.get(k) == v for k, v in fields.items()):
                    return e
            await trio.sleep(0.05)


def events(server: Any, kind: str) -> list[dict[str, Any]]:
    return [e for e in server.bus.recent if e["type"] == kind]


@pytest.fixture
async def saving_engine(nursery, tmp_path):
    slots = tmp_path / "slots"
    slots.mkdir()
    return await start_llama_server(nursery, n_ctx=8192, extra_args=[
        "--slot-save-path", f"{slots}/", "--cache-ram", "0"])


async def test_a_second_session_on_one_slot_is_saved_and_restored(start_lmsd, saving_engine):
    """One slot, no RAM cache: session B takes A's slot. lmsd saves A first and restores
    it before A's next turn, so A prefills only its new message."""
    server = await start_lmsd(saving_engine.url, model=MODEL_ALIAS, upstream_api="chat")
    engine = await wait_event(server, "cache.engine")
    assert (engine["slots"], engine["slot_save"], engine["pins"]) == (1, True, True)
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        await turn(http, "aaaa", 1)
        first = await last_task(saving_engine.url)
        await turn(http, "bbbb", 1)
        saved = await wait_event(server, "cache.saved")
        assert saved["conversation"] == "aaaa/main"
        assert saved["tokens"] > 2000 and saved["bytes"] > 1000 * saved["tokens"]  # KV
        await turn(http, "aaaa", 2)
    assert (await wait_event(server, "cache.restored"))["conversation"] == "aaaa/main"
    assert first["n_prompt_tokens"] > 2000
    assert (await prefilled(saving_engine))[-1] < 40  # only the new turn, not 2k tokens again
    # the dense model's restore saved the prefill: judged so, restores go on
    assert not events(server, "cache.restore_ineffective")
    judged = server.router.backends[0].keeper.to_json()["restores"][MODEL_ALIAS]
    assert (judged["effective"], judged["warm_up"]) == (1, "restore")


async def test_after_an_engine_restart_the_idle_slot_comes_back_from_disk(
        start_lmsd, saving_engine):
    """The slot is saved once idle (a crash gives no warning); after the engine restarts,
    lmsd sees its slots empty and restores the conversation before its next turn."""
    server = await start_lmsd(saving_engine.url, model=MODEL_ALIAS, upstream_api="chat",
                              slot_save_idle="0.2")
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        await turn(http, "cccc", 1)
        first = await last_task(saving_engine.url)
        saved = await wait_event(server, "cache.saved", why="idle")
        assert saved["conversation"] == "cccc/main"
        await saving_engine.restart()
        lost = await wait_event(server, "cache.lost")
        assert lost["rewarm"] == ["cccc/main"]
        warmed = await wait_event(server, "cache.warmed")
        assert warmed["how"] == "restored"
        await turn(http, "cccc", 2)
    assert first["n_prompt_tokens"] > 2000
    assert (await prefilled(saving_engine))[-1] < 40


async def test_without_slot_files_a_restart_is_rewarmed_by_a_replay(start_lmsd, nursery):
    """No --slot-save-path: after the restart lmsd replays the conversation's last
    request for one token, so the next turn finds the prefix cached."""
    engine = await start_llama_server(nursery, n_ctx=8192)
    server = await start_lmsd(engine.url, model=MODEL_ALIAS, upstream_api="chat")
    assert (await wait_event(server, "cache.engine"))["slot_save"] is False
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        await turn(http, "dddd", 1)
        first = await last_task(engine.url)
        await engine.restart()
        await wait_event(server, "cache.lost")
        warmed = await wait_event(server, "cache.warmed")
        assert warmed["how"] == "replayed"
        replayed = await last_task(engine.url)
        assert replayed["n_prompt_tokens"] >= first["n_prompt_tokens"] - 8  # the whole prompt
        await turn(http, "dddd", 2)
    assert (await prefilled(engine))[-2] >= first["n_prompt_tokens"] - 8  # the replay: cold
    assert (await prefilled(engine))[-1] < 40  # the next turn: warm


async def test_two_slots_with_their_own_kv_pin_each_session(start_lmsd, nursery):
    """-np 2 (per-slot KV): two sessions sharing the system prompt each keep a slot, so
    neither evicts the other (without pins llama-server puts B on A's slot)."""
    engine = await start_llama_server(nursery, n_ctx=16384, slots=2)
    server = await start_lmsd(engine.url, model=MODEL_ALIAS, upstream_api="chat")
    setup = await wait_event(server, "cache.engine")
    assert (setup["slots"], setup["keeps_idle_slots"], setup["pins"]) == (2, True, True)
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        await turn(http, "eeee", 1)
        await turn(http, "ffff", 1)
        await turn(http, "eeee", 2)
    assert (await prefilled(engine))[-1] < 40  # A's slot still held A: only its new message
    pinned = [e["slot"] for e in events(server, "cache.pinned")]
    assert pinned == [0, 1]  # A to slot 0, B to slot 1


async def test_unified_kv_is_not_pinned(start_lmsd, nursery):
    """llama-server's default (4 slots, unified KV, RAM cache): a task clears the idle
    slots, so a pinned conversation would re-prefill every turn. lmsd sees it and leaves
    the slot choice to the engine."""
    engine = await start_llama_server(nursery, n_ctx=16384, slots=4,
                                      extra_args=["--kv-unified"])
    server = await start_lmsd(engine.url, model=MODEL_ALIAS, upstream_api="chat")
    setup = await wait_event(server, "cache.engine")
    assert (setup["slots"], setup["keeps_idle_slots"], setup["pins"]) == (4, False, False)


async def test_a_miss_is_reported_with_its_cause(start_lmsd, nursery):
    """One slot, no slot files: another conversation with another prompt takes the slot,
    and the first one's next turn prefills everything again. lmsd says so, and why."""
    engine = await start_llama_server(nursery, n_ctx=8192, extra_args=["--cache-ram", "0"])
    server = await start_lmsd(engine.url, model=MODEL_ALIAS, upstream_api="chat")
    await wait_event(server, "cache.engine")
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        await turn(http, "gggg", 1)
        await turn(http, "hhhh", 1, system=SYSTEM.replace("Rule", "Law"))
        await turn(http, "gggg", 2)
    miss = await wait_event(server, "cache.miss")
    assert miss["conversation"] == "gggg/main" and miss["why"] == "its slot 0 went to hhhh/main"
    assert miss["prefilled_tokens"] == (await prefilled(engine))[-1] > 2000
    end = [e for e in events(server, "request.end")][-1]
    assert end["prefilled_tokens"] == miss["prefilled_tokens"]
    assert len(events(server, "cache.miss")) == 1  # first turns are cold, not misses


async def test_an_lmsd_restart_finds_each_conversation_on_its_slot(start_lmsd, nursery):
    """-np 2, lmsd restarted while the engine runs on: the new lmsd reads where the old
    one left each conversation (the store) and does not disturb the slots, so both
    conversations' next turns are warm."""
    engine = await start_llama_server(nursery, n_ctx=16384, slots=2)
    first = await start_lmsd(engine.url, model=MODEL_ALIAS, upstream_api="chat")
    async with httpx.AsyncClient(base_url=first.url, timeout=120) as http:
        await turn(http, "iiii", 1)
        await turn(http, "jjjj", 1, system=SYSTEM.replace("Rule", "Law"))
    recent = first.router.backends[0].keeper.recent
    with trio.fail_after(30):
        while recent.unwritten:  # what it keeps for the next lmsd is in the store
            await trio.sleep(0.02)
    first.shutdown.set()
    second = await start_lmsd(engine.url, model=MODEL_ALIAS, upstream_api="chat")
    setup = await wait_event(second, "cache.engine")
    assert setup["pins"] is True
    async with httpx.AsyncClient(base_url=second.url, timeout=120) as http:
        await turn(http, "iiii", 2)
        assert (await prefilled(engine))[-1] < 40
        await turn(http, "jjjj", 2, system=SYSTEM.replace("Rule", "Law"))
        assert (await prefilled(engine))[-1] < 40
    assert not events(second, "cache.miss")


async def test_doctor_says_what_the_engine_offers_without_touching_it(nursery, tmp_path):
    from lmsd.config import load_settings
    from lmsd.ops.doctor.upstream import check_cache
    from lmsd.upstreams.discovery import Found

    bare = await start_llama_server(nursery, n_ctx=4096)
    settings = load_settings({"upstream": bare.url}, {})
    warned = await check_cache(settings, Found(bare.url, "config", True))
    assert warned.status == "warn" and "--slot-save-path" in (warned.fix or "")
    slots = tmp_path / "doctor-slots"
    slots.mkdir()
    saving = await start_llama_server(nursery, n_ctx=4096, slots=2,
                                      extra_args=["--slot-save-path", f"{slots}/"])
    ok = await check_cache(settings, Found(saving.url, "config", True))
    assert ok.status == "ok" and "2 slot(s), slots saved and restored" in ok.detail
    assert all("id_task" not in s for s in (await last_slots(saving.url)))  # untouched
    assert list(slots.iterdir()) == []


async def last_slots(engine: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=engine) as http:
        return (await http.get("/slots")).json()


async def test_a_second_session_starts_from_the_first_ones_slot_file(start_lmsd, nursery,
                                                                      tmp_path):
    """-np 2 with slot files: session B, new, gets its own slot (A keeps its), and that
    slot is first restored from A's file, so B prefills only what differs from A, not the
    shared system prompt again."""
    slots = tmp_path / "seed-slots"
    slots.mkdir()
    engine = await start_llama_server(nursery, n_ctx=16384, slots=2, extra_args=[
        "--slot-save-path", f"{slots}/", "--cache-ram", "0"])
    server = await start_lmsd(engine.url, model=MODEL_ALIAS, upstream_api="chat")
    await wait_event(server, "cache.engine")
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        await turn(http, "kkkk", 1)
        a_tokens = (await prefilled(engine))[-1]
        await turn(http, "llll", 1)
        assert (await prefilled(engine))[-1] < 40 < a_tokens  # only B's own message
        await turn(http, "kkkk", 2)
        assert (await prefilled(engine))[-1] < 40  # A kept its slot
    restored = events(server, "cache.restored")
    assert [(e["conversation"], e["seeded"]) for e in restored] == [("llll/main", True)]


async def test_a_restart_on_unified_kv_is_seen_and_rewarmed(start_lmsd, nursery):
    """-np 2 --kv-unified (no pins: no slot lmsd left to find empty): the engine's task ids
    starting again give the restart away. lmsd says ``cache.lost``, replays the last
    conversation, and its next turn prefills only its new message."""
    engine = await start_llama_server(nursery, n_ctx=16384, slots=2,
                                      extra_args=["--kv-unified"])
    server = await start_lmsd(engine.url, model=MODEL_ALIAS, upstream_api="chat")
    setup = await wait_event(server, "cache.engine")
    assert setup["pins"] is False
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        await turn(http, "mmmm", 1)
        first = (await prefilled(engine))[-1]
        await engine.restart()
        lost = await wait_event(server, "cache.lost")
        assert "restarted" in lost["why"] and lost["rewarm"] == ["mmmm/main"]
        warmed = await wait_event(server, "cache.warmed", how="replayed")
        await turn(http, "mmmm", 2)
    assert first > 1000 and warmed["prefilled_tokens"] >= first - 8  # the replay: cold
    assert (await prefilled(engine))[-1] < 40  # the next turn: only its new message


async def test_on_a_sliding_window_model_a_cosmetic_restore_is_seen_and_replayed_instead(
        start_lmsd, nursery, tmp_path):
    """The SWA twin of the tiny model (``make_model.py --swa``), one slot with slot files:
    llama-server restores A's file (and says how many tokens) but A's next turn prefills
    it all again. lmsd reads that from the engine's counters, says so once, and warms A
    after the engine's restart by a replay, not a restore: the next turn is warm."""
    slots = tmp_path / "swa-slots"
    slots.mkdir()
    engine = await start_llama_server(nursery, n_ctx=8192, swa=True, extra_args=[
        "--slot-save-path", f"{slots}/", "--cache-ram", "0"])
    server = await start_lmsd(engine.url, model=MODEL_ALIAS, upstream_api="chat")
    await wait_event(server, "cache.engine")
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        await turn(http, "nnnn", 1)
        await turn(http, "oooo", 1, system=SYSTEM.replace("Rule", "Law"))
        await turn(http, "nnnn", 2)  # after a restore of its file
        restored = await wait_event(server, "cache.restored", conversation="nnnn/main")
        bad = await wait_event(server, "cache.restore_ineffective")
        assert bad["conversation"] == "nnnn/main" and bad["switched_to_replay"] is True
        assert bad["restored_tokens"] == restored["tokens"] > 2000
        assert bad["prefilled_tokens"] == (await prefilled(engine))[-1] > 2000  # all of it again
        assert bad["cached_tokens"] == 0
        miss = await wait_event(server, "cache.miss", conversation="nnnn/main")
        assert "restored its slot file but kept none of it" in miss["why"]
        await engine.restart()
        lost = await wait_event(server, "cache.lost")
        assert "nnnn/main" in lost["rewarm"]
        warmed = await wait_event(server, "cache.warmed", conversation="nnnn/main")
        assert warmed["how"] == "replayed"
        await turn(http, "nnnn", 3)
    assert (await prefilled(engine))[-1] < 40  # the replay warmed it: only the new message
    assert len(events(server, "cache.restored")) == 1  # never restored again
    [row] = (await admin_get(server, "/upstreams")).json()["upstreams"]
    assert row["cache"]["restores"][MODEL_ALIAS]["warm_up"] == "replay"
    assert row["cache"]["restores_skipped"] == 1  # after the restart: replayed, not restored
    from lmsd.config import load_settings
    from lmsd.ops.doctor.upstream import check_cache
    from lmsd.upstreams.discovery import Found

    said = await check_cache(load_settings({"upstream": engine.url}, {}),
                             Found(engine.url, "config", True), row["cache"]["restore"])
    assert said.status == "warn" and "slot restore saved no prefill" in said.detail
