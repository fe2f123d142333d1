"""llama-server as users run it (``-np`` auto: 4 slots over one unified KV buffer, the RAM
cache on, idle slots cleared into it when a task starts), through lmsd with ``keep_warm``.

The engine's own slot choice loses a conversation's prefix when another conversation
that starts alike (a second Claude Code session: the same system prompt and tools) sat
on the slot last: the first one's next turn reuses that slot, because it keeps more than
half of it, and the engine then does not look in its RAM cache, where the first one's
state sits. lmsd parks the other one in the RAM cache first, or restores the first one's
slot file where the engine saves them. Counted from the engine's own log."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.test_keep_warm import events, prefilled, wait_event
from tests.engine.llama_server import start_llama_server
from tests.engine.server import MODEL_ALIAS

pytestmark = pytest.mark.engine
#: About 1.2k tokens both sessions share, as two Claude Code sessions share theirs.
SYSTEM = " ".join(f"Rule {n}: keep the code tidy, small and tested." for n in range(120))


def words(session: str, n: int, count: int) -> str:
    return " ".join(f"{session}{n}w{i}" for i in range(count))


def body(session: str, turns: int, size: int) -> dict[str, Any]:
    """``turns`` user messages of about ``size`` words each: a conversation's own part."""
    messages: list[dict[str, Any]] = []
    for n in range(turns):
        messages.append({"role": "user", "content": words(session, n, size)})
        if n + 1 < turns:
            messages.append({"role": "assistant", "content": f"answer {n}"})
    return {"model": "claude-opus-5-5", "max_tokens": 4, "system": SYSTEM,
            "messages": messages, "metadata": {"user_id": f"user_x_account__session_{session}"}}


async def turn(http: httpx.AsyncClient, session: str, turns: int, size: int = 150) -> None:
    answer = await http.post("/v1/messages", json=body(session, turns, size))
    assert answer.status_code == 200, answer.text


async def two_sessions(http: httpx.AsyncClient) -> None:
    """Session A grows to about 4.8k tokens, 2.1k of them the shared system prompt; B
    starts with the same system prompt and a short message (2.6k). B keeps less than
    half of A's slot, so the engine saves A in its RAM cache; A's next turn keeps more
    than half of B's slot, so the engine reuses it without looking in the cache."""
    for n in range(1, 5):
        await turn(http, "a", n)
    await turn(http, "b", 1, size=100)


async def test_the_engine_alone_loses_the_first_session_to_the_second(nursery):
    """The baseline, straight to the engine: A's next turn after B prefills A's whole
    own part again (what lmsd fixes below)."""
    engine = await start_llama_server(nursery, n_ctx=32768, slots=None)
    async with httpx.AsyncClient(base_url=engine.url, timeout=120) as http:
        for n, session, size in ((1, "a", 150), (2, "a", 150), (3, "a", 150),
                                 (4, "a", 150), (1, "b", 100), (5, "a", 150)):
            chat = body(session, n, size)
            messages = [{"role": "system", "content": SYSTEM}, *chat["messages"]]
            answer = await http.post("/v1/chat/completions", json={
                "model": MODEL_ALIAS, "max_tokens": 4, "messages": messages})
            assert answer.status_code == 200, answer.text
    assert (await prefilled(engine))[-1] > 3000  # A's whole own part again


async def test_a_second_session_is_parked_in_the_ram_cache(start_lmsd, nursery):
    """No slot files: before A's next turn lmsd parks B in the RAM cache, so A's turn
    loads its own state from there and prefills only its new message."""
    engine = await start_llama_server(nursery, n_ctx=32768, slots=None)
    server = await start_lmsd(engine.url, model=MODEL_ALIAS, upstream_api="chat")
    setup = await wait_event(server, "cache.engine")
    assert (setup["slots"], setup["unified"], setup["slot_save"]) == (4, True, False)
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        await two_sessions(http)
        assert not events(server, "cache.parked")  # B is new: left to the engine
        await turn(http, "a", 5)
    parked = await wait_event(server, "cache.parked")
    assert (parked["conversation"], parked["before"]) == ("b/main", "a/main")
    assert parked["error"] is None
    assert (await prefilled(engine))[-1] < 800  # A's new message (~670 tokens), not its 3.4k


async def test_with_slot_files_a_switch_back_and_a_restart_cost_a_restore(
        start_lmsd, nursery, tmp_path):
    """``--slot-save-path`` on the defaults (what ``lmsd doctor`` advises): lmsd saves
    the last conversation's slot at each switch and restores A's file before A's next
    turn; after an engine restart it restores A again and replays only what the file
    lacks, so A's next turn prefills only its new message."""
    (tmp_path / "slots").mkdir()
    engine = await start_llama_server(nursery, n_ctx=32768, slots=None, extra_args=[
        "--slot-save-path", f"{tmp_path / 'slots'}/"])
    server = await start_lmsd(engine.url, model=MODEL_ALIAS, upstream_api="chat")
    setup = await wait_event(server, "cache.engine")
    assert (setup["unified"], setup["slot_save"]) == (True, True)
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        await two_sessions(http)
        await turn(http, "a", 5)
        assert (await prefilled(engine))[-1] < 800
        saved = [(e["conversation"], e["why"]) for e in events(server, "cache.saved")]
        assert saved == [("a/main", "switch"), ("b/main", "switch")], \
            events(server, "cache.slot_failed")  # a save that failed says why
        restored = await wait_event(server, "cache.restored")
        assert restored["conversation"] == "a/main"
        await engine.restart()
        lost = await wait_event(server, "cache.lost")
        assert "restarted" in lost["why"] and lost["rewarm"] == ["a/main"]
        warmed = await wait_event(server, "cache.warmed", how="replayed")
        await turn(http, "a", 6)
    assert len(events(server, "cache.restored")) == 2
    # the file held A up to turn 4: the replay of turn 5 prefilled its message only
    assert warmed["prefilled_tokens"] < 800 and warmed["cached_tokens"] > 4000
    assert (await prefilled(engine))[-1] < 800


async def test_doctor_names_the_one_flag_the_defaults_lack(nursery):
    """On the engine's defaults the one change ``lmsd doctor`` names is
    ``--slot-save-path``: without it an engine restart costs every conversation its
    prefix (the RAM cache dies with the process)."""
    from lmsd.config import load_settings
    from lmsd.ops.doctor.upstream import check_cache
    from lmsd.upstreams.discovery import Found

    engine = await start_llama_server(nursery, n_ctx=32768, slots=None)
    said = await check_cache(load_settings({"upstream": engine.url}, {}),
                             Found(engine.url, "config", True))
    assert said.status == "warn" and "4 slot(s), no --slot-save-path" in said.detail
    assert "restart" in said.detail
    assert (said.fix or "").startswith("add --slot-save-path DIR/ to llama-server's")
