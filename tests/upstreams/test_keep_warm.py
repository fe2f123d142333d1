"""Re-warming where nothing can be restored (LM Studio, emulated): after the watcher's
reload, after the upstream came back and after lmsd restarted, lmsd replays the most
recent conversations' last request for a prefill only; a real request preempts it."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from tests.emulator.script import Fault
from tests.support.daemon import MODEL, admin_get, next_event

SESSION = "5b0c2a8e-2f3c-4d8b-9a57-0c6e6a1f2d11"


async def one_turn(server: Any, text: str = "hello", session: str = SESSION) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        answer = await http.post("/v1/messages", headers={
            "x-claude-code-session-id": session}, json={
            "model": "claude-opus-5-5", "max_tokens": 64, "system": "You code.",
            "messages": [{"role": "user", "content": text}]})
    assert answer.status_code == 200, answer.text


async def stop(server: Any) -> None:
    """Stop an lmsd once what it keeps for a re-warm is in the store."""
    recent = server.router.backends[0].keeper.recent
    with trio.fail_after(30):
        while recent.unwritten:
            await trio.sleep(0.02)
    server.shutdown.set()


def warmups(emulator: Any) -> list[Any]:
    return [r for r in emulator.log if r.path == "/v1/responses"
            and r.body.get("store") is False and r.body.get("max_output_tokens") == 16]


async def test_after_the_watcher_reloads_the_model_the_last_conversation_is_replayed(
        start_lmsd, emulator):
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.05")
    await one_turn(server)
    [sent] = [r for r in emulator.log if r.path == "/v1/responses"]
    with server.bus.subscribe(types=("cache",), replay=100) as sub:
        emulator.models[MODEL].context_length = 4096  # the watcher raises it: a reload
        lost = await next_event(sub, "cache.lost")
        warmed = await next_event(sub, "cache.warmed")
    assert "was loaded again" in lost["why"] and lost["rewarm"] == [f"{SESSION}/main"]
    assert warmed["how"] == "replayed"
    [warmup] = warmups(emulator)
    assert warmup.body["input"] == sent.body["input"]  # the whole prompt, for its prefill
    assert warmup.body["stream"] is False and "previous_response_id" not in warmup.body
    cache = (await admin_get(server, "/upstreams")).json()["upstreams"][0]["cache"]
    assert cache["warmups"] == 1 and cache["lost"] == 1


async def test_a_real_request_preempts_a_warmup(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.05")
    await one_turn(server)
    emulator.inject(Fault("slow_first_byte", seconds=600))  # the replay: a long prefill
    with server.bus.subscribe(types=("cache",), replay=100) as sub:
        emulator.models[MODEL].context_length = 4096
        await next_event(sub, "cache.warmup")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one_turn, server, "next question")
            preempted = await next_event(sub, "cache.warmup_preempted")
    assert preempted["conversation"] == preempted["by"] == f"{SESSION}/main"
    assert not [e for e in server.bus.recent if e["type"] == "cache.warmed"]
    cache = (await admin_get(server, "/upstreams")).json()["upstreams"][0]["cache"]
    assert cache["warmups_preempted"] == 1 and cache["queued"] == []


async def test_after_lmsd_restarts_its_recent_conversations_are_warmed(start_lmsd, emulator):
    first = await start_lmsd(emulator.url)
    await one_turn(first, "older question", session=SESSION)
    await one_turn(first, "newer question", session="0d3e4f5a-1111-4222-8333-944455556666")
    await stop(first)
    assert warmups(emulator) == []
    second = await start_lmsd(emulator.url, rewarm_conversations="2")  # the same state
    with second.bus.subscribe(types=("cache",), replay=100) as sub:
        await next_event(sub, "cache.warmed")
        await next_event(sub, "cache.warmed")
    replayed = [str(r.body["input"]) for r in warmups(emulator)]
    assert len(replayed) == 2
    assert "newer question" in replayed[0] and "older question" in replayed[1]


async def test_keep_warm_off_sends_nothing_but_the_requests(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.05",
                              keep_warm="false")
    await one_turn(server)
    with server.bus.subscribe(types=("model",), replay=100) as sub:
        emulator.models[MODEL].context_length = 4096
        await next_event(sub, "model.context_enforced")
    cache = (await admin_get(server, "/upstreams")).json()["upstreams"][0]["cache"]
    assert cache["enabled"] is False and cache["lost"] == 0 and cache["queued"] == []
    assert warmups(emulator) == []


async def test_a_reset_session_is_not_warmed_again(start_lmsd, emulator):
    first = await start_lmsd(emulator.url)
    await one_turn(first, "to be forgotten")
    async with httpx.AsyncClient(base_url=first.admin_url) as admin:
        assert (await admin.delete(f"/sessions/{SESSION}")).status_code == 200
    keeper = first.router.backends[0].keeper
    assert keeper.recent.latest(keeper.name, 10) == []
    await stop(first)
    second = await start_lmsd(emulator.url)  # the same state directory
    keeper = second.router.backends[0].keeper
    with trio.fail_after(10):
        await keeper.loaded.wait()
    assert keeper.recent.latest(keeper.name, 10) == [] and keeper.to_json()["queued"] == []
    assert warmups(emulator) == []


async def test_a_conversation_idle_past_the_active_window_is_not_warmed(start_lmsd,
                                                                        emulator):
    """After a night, lmsd starting (or the engine coming back) warms nothing: a warm-up
    would load a model for nobody."""
    first = await start_lmsd(emulator.url, active_window="0.5")
    await one_turn(first, "yesterday's question")
    await stop(first)
    await trio.sleep(1)  # the conversation is now older than the active window
    second = await start_lmsd(emulator.url, active_window="0.5")
    keeper = second.router.backends[0].keeper
    with trio.fail_after(10):
        await keeper.loaded.wait()
    assert keeper.to_json()["queued"] == []
    keeper.lost("test: the engine restarted")
    assert keeper.to_json()["queued"] == [] and warmups(emulator) == []


async def test_a_title_naming_the_local_model_does_not_replace_what_a_rewarm_replays(
        start_lmsd, emulator):
    """With ANTHROPIC_SMALL_FAST_MODEL set to the local model, Claude Code's title request
    is still known for a side request (no tools, no thinking, one message, a JSON schema):
    the conversation's last request, the one a re-warm replays, stays the real turn."""
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.05")
    await one_turn(server, "the real question")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        answer = await http.post("/v1/messages", headers={
            "x-claude-code-session-id": SESSION}, json={
            "model": MODEL, "max_tokens": 32000, "system": "You are naming a session.",
            "output_config": {"format": {"type": "json_schema", "schema": {
                "type": "object", "properties": {"title": {"type": "string"}}}}},
            "messages": [{"role": "user", "content": "<session>the real question</session>"}]})
    assert answer.status_code == 200, answer.text
    keeper = server.router.backends[0].keeper
    kept = keeper.recent.get(keeper.name, f"{SESSION}/main")
    assert kept is not None and "the real question" in str(kept.body["input"])
    assert "<session>" not in str(kept.body["input"])
    with server.bus.subscribe(types=("cache",), replay=100) as sub:
        emulator.models[MODEL].context_length = 4096  # a reload: the conversation re-warms
        await next_event(sub, "cache.warmed")
    [warmup] = warmups(emulator)
    assert "<session>" not in str(warmup.body["input"])
