"""Models on demand on the LM Studio emulator, through the daemon: the budget unloads the
least recently used model (never one with a request in flight: the load waits), a group
takes turns, a pinned model holds its group, the idle ttl unloads what lmsd loaded (never
what the user loaded), and a conversation whose model was swapped out and back is warmed
again when it returns. The emulator's models say ``size_bytes`` 17,000,000,000 each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import trio

from tests.emulator.script import Fault
from tests.support.daemon import MODEL

COLD = "google/gemma-3-12b"


def body(model: str, text: str = "hello", *, stream: bool = False) -> dict[str, Any]:
    return {"model": model, "max_tokens": 10, "stream": stream,
            "messages": [{"role": "user", "content": text}]}


async def wait_until(check: Any, seconds: float = 10) -> None:
    with trio.fail_after(seconds):
        while not check():
            await trio.sleep(0.01)


def events(server: Any, kind: str) -> list[dict[str, Any]]:
    return [e for e in server.bus.recent if e["type"] == kind]


def calls(emulator: Any, path: str) -> list[Any]:
    return [r.body for r in emulator.log if r.path == path]


async def started(start_lmsd: Any, emulator: Any, tmp_path: Path, toml: str = "",
                  **overrides: str) -> Any:
    config = tmp_path / "lmsd.toml"
    config.write_text(toml)
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.1",
                              config=str(config), **overrides)
    await wait_until(lambda: server.router.backends[0].watcher.polls)
    return server


async def test_past_the_budget_the_older_model_leaves_and_the_new_one_serves(
        start_lmsd, emulator, tmp_path):
    server = await started(start_lmsd, emulator, tmp_path, memory_budget="20GB")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        first = await http.post("/v1/messages", json=body(MODEL))
        answer = await http.post("/v1/messages", json=body(COLD))
    assert first.status_code == 200 and answer.status_code == 200, answer.text
    assert calls(emulator, "/api/v1/models/unload") == [{"instance_id": MODEL}]
    assert [b["model"] for b in calls(emulator, "/api/v1/models/load")] == [COLD]
    assert not emulator.models[MODEL].loaded and emulator.models[COLD].loaded
    (unload,) = events(server, "model.unload")
    assert unload["model"] == MODEL and unload["cause"] == "budget"
    assert unload["swap_for"] == COLD and "20.0 GB" not in unload["why"]
    assert "budget: google/gemma-3-12b needs 15.8 GiB" in unload["why"]
    assert [e["unloaded"] for e in events(server, "model.swap")] == [[MODEL]]
    assert [g.model for g in emulator.generations] == [MODEL, COLD]
    async with httpx.AsyncClient(base_url=server.admin_url) as admin:
        metrics = (await admin.get("/metrics")).text
        view = (await admin.get("/models")).json()
    assert 'lmsd_model_unloads_total{cause="budget"} 1.0' in metrics
    assert "lmsd_model_swaps_total 1.0" in metrics
    assert view["budgets"] == [{"upstream": server.router.backends[0].name,
                                "budget_bytes": 20_000_000_000,
                                "used_bytes": 17_000_000_000}]
    rows = {r["name"]: r for r in view["models"]}
    assert rows[COLD]["loaded"] and rows[COLD]["by_lmsd"] and rows[COLD]["loads"] == 1
    assert not rows[MODEL]["loaded"] and rows[MODEL]["state"] == "not loaded"


async def test_a_model_with_a_request_in_flight_is_not_unloaded_the_load_waits(
        start_lmsd, emulator, tmp_path):
    server = await started(start_lmsd, emulator, tmp_path, memory_budget="20GB",
                           ping_interval="0.1")
    pool = server.router.backends[0].pool
    emulator.inject(Fault.hang())  # the first request holds the model until it is dropped
    answers: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http, \
            trio.open_nursery() as nursery:
        busy = trio.CancelScope()

        async def hold() -> None:
            with busy:
                await http.post("/v1/messages", json=body(MODEL))

        async def cold() -> None:
            answers["cold"] = (await http.post("/v1/messages", json=body(COLD))).status_code

        nursery.start_soon(hold)
        await wait_until(lambda: pool.rows()[0]["in_flight"] == 1)
        nursery.start_soon(cold)
        await wait_until(lambda: events(server, "model.waiting"))
        assert events(server, "model.waiting")[0]["for_requests_on"] == [MODEL]
        assert not calls(emulator, "/api/v1/models/unload"), "never under a request"
        busy.cancel()  # the client leaves: the request ends, the room is free
    assert answers == {"cold": 200}
    assert calls(emulator, "/api/v1/models/unload") == [{"instance_id": MODEL}]


async def test_models_of_one_group_take_turns(start_lmsd, emulator, tmp_path):
    toml = (f'[[models]]\nname = "{MODEL}"\ngroup = "main"\n'
            f'[[models]]\nname = "{COLD}"\ngroup = "main"\n')
    server = await started(start_lmsd, emulator, tmp_path, toml)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        answer = await http.post("/v1/messages", json=body(COLD))
    assert answer.status_code == 200, answer.text
    (unload,) = events(server, "model.unload")
    assert unload["model"] == MODEL and unload["cause"] == "group"
    assert "group 'main'" in unload["why"]
    assert not emulator.models[MODEL].loaded


async def test_a_pinned_model_holds_its_group_and_the_request_is_told_why(
        start_lmsd, emulator, tmp_path):
    toml = (f'[[models]]\nname = "{MODEL}"\ngroup = "main"\npinned = true\n'
            f'[[models]]\nname = "{COLD}"\ngroup = "main"\n')
    server = await started(start_lmsd, emulator, tmp_path, toml)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        answer = await http.post("/v1/messages", json=body(COLD))
    assert answer.status_code == 503, answer.text
    message = answer.json()["error"]["message"]
    assert f"cannot load {COLD}" in message and f"{MODEL} is pinned in group 'main'" in message
    assert emulator.models[MODEL].loaded and not emulator.models[COLD].loaded
    assert not calls(emulator, "/api/v1/models/unload")
    assert not calls(emulator, "/api/v1/models/load")


async def test_the_idle_ttl_unloads_what_lmsd_loaded_and_not_the_users_model(
        start_lmsd, emulator, tmp_path):
    server = await started(start_lmsd, emulator, tmp_path, model_ttl="0.5")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        answer = await http.post("/v1/messages", json=body(COLD))
    assert answer.status_code == 200, answer.text
    await wait_until(lambda: events(server, "model.unload"))
    (unload,) = events(server, "model.unload")
    assert unload["model"] == COLD and unload["cause"] == "ttl"
    assert "idle for 0.5 s" in unload["why"]
    assert not emulator.models[COLD].loaded
    assert emulator.models[MODEL].loaded, "the model the user loaded stays"


async def test_a_conversation_swapped_out_and_back_is_warmed_when_its_model_returns(
        start_lmsd, emulator, tmp_path):
    server = await started(start_lmsd, emulator, tmp_path, memory_budget="20GB",
                           rewarm_conversations="2")
    headers_a = {"x-claude-code-session-id": "on-qwen"}
    headers_b = {"x-claude-code-session-id": "on-gemma"}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await http.post("/v1/messages", json=body(MODEL, "the qwen task"),
                                headers=headers_a)).status_code == 200
        assert (await http.post("/v1/messages", json=body(COLD, "the gemma task"),
                                headers=headers_b)).status_code == 200
        before = len(emulator.generations)
        # qwen comes back (for another request): its conversation is replayed while idle
        assert (await http.post("/v1/messages", json=body(MODEL, "a side question"),
                                headers={"x-claude-code-session-id": "other"})
                ).status_code == 200
    await wait_until(lambda: events(server, "cache.warmed") or
                     events(server, "cache.warmup_failed"))
    lost = [e for e in events(server, "cache.lost") if MODEL in e["why"]]
    assert lost and "was loaded again" in lost[-1]["why"]
    assert events(server, "cache.warmed"), events(server, "cache.warmup_failed")
    replayed = [g for g in emulator.generations[before:] if g.model == MODEL]
    assert any("the qwen task" in str(g.body) for g in replayed), \
        "the conversation on the model that came back is the one warmed"
    assert not any("the gemma task" in str(g.body) for g in emulator.generations[before:])


async def test_the_turn_that_brought_its_model_back_is_not_pushed_out_by_a_replay(
        start_lmsd, emulator, tmp_path):
    """Session 1 works on qwen, switches to gemma and back; session 2 was on qwen too. The
    turn back loads qwen and prefills session 1 itself: with ``rewarm_conversations`` 1,
    replaying session 2 now would push session 1's prefix out of the engine's cache
    before its next turn (bench/day_switch.py found it: 5.3 s instead of 0.5)."""
    server = await started(start_lmsd, emulator, tmp_path, memory_budget="20GB",
                           rewarm_conversations="1")
    one = {"x-claude-code-session-id": "session-1"}
    two = {"x-claude-code-session-id": "session-2"}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for model, headers, text in ((MODEL, two, "session two"), (MODEL, one, "one on qwen"),
                                     (COLD, one, "one on gemma"), (MODEL, one, "one back")):
            answer = await http.post("/v1/messages", json=body(model, text), headers=headers)
            assert answer.status_code == 200, answer.text
        before = len(emulator.generations)
        await wait_until(lambda: events(server, "cache.warmup_skipped"))
    (skipped,) = events(server, "cache.warmup_skipped")
    assert skipped["conversation"] == "session-2/main"
    assert "more recent conversations" in skipped["why"]
    assert not events(server, "cache.warmup")
    assert len(emulator.generations) == before, "no replay after the turn back"
