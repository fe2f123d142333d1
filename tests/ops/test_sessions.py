"""``lmsd sessions``, ``reset`` and ``record``, run as real subprocesses against an
in-process lmsd and the LM Studio emulator, and the sessions table's cells."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from lmsd.ops.sessions import format_sessions, last_prefill
from lmsd.ops.text import ago, duration, ratio
from tests.ops.lmsd_cli import (
    MODEL,
    admin_address,
    converse,
    ok,
    run,
)


async def test_sessions_pretty_and_json(lmsd, emulator):
    await converse(lmsd, emulator, "sess-1", turns=3)
    await converse(lmsd, emulator, "sess-1", turns=1, agent="agent-7")
    data = json.loads(ok(await run("sessions", "--json", "--admin-listen", admin_address(lmsd))))
    [entry] = data["sessions"]
    assert entry["session"] == "sess-1"
    agents = {a["agent"]: a for a in entry["agents"]}
    assert set(agents) == {"main", "agent-7"}
    assert agents["main"]["turns"] == 3
    assert agents["main"]["chain_hits"] == 2
    assert entry["fronts"] == agents["main"]["fronts"] == ["anthropic"]

    text = ok(await run("sessions", "--admin-listen", admin_address(lmsd)))
    header, *rows = text.splitlines()
    assert header.split() == ["SESSION", "FRONT", "AGENT", "MODEL", "TURNS", "HITS", "MISSES",
                              "CACHED", "ITEMS", "SENT/FULL", "TOKENS", "SENT/FULL", "REPAIRED",
                              "LAST", "PREFILLED/CACHED", "LAST", "USED"]
    assert len(rows) == 2
    main = next(r for r in rows if " main " in r)
    stats = lmsd.store.stats[("sess-1", "main", MODEL)]
    expected = ["sess-1", "anthropic", "main", MODEL, "3", "2", "no_node:1", "-",
                ratio(stats.items_sent, stats.items_full),
                ratio(stats.tokens_sent, stats.tokens_full), "0"]
    assert re.split(r"\s{2,}", main)[:11] == expected
    assert re.search(r"(just now|\ds ago)$", main)
    assert "(" in expected[8] and "%)" in expected[8]  # sent vs full as a percentage


async def test_sessions_on_a_stateless_upstream_show_the_cached_share(start_lmsd, emulator):
    """A chat upstream (llama-server) keeps no state: every turn is the whole history, by
    design. ``lmsd sessions`` says so (``unchained``, no misses) and shows what matters
    there, the share of the prompt the engine's prefix cache held."""
    emulator.llama_server = True  # its timings say what it prefilled and held
    emulator.usage_mode = "openai"  # and its usage agrees (LM Studio's sticks at 0)
    server = await start_lmsd(emulator.url, upstream_api="chat")
    await converse(server, emulator, "sess-c", turns=3)
    text = ok(await run("sessions", "--admin-listen", admin_address(server)))
    header, row = text.splitlines()
    assert header.split()[4:8] == ["TURNS", "HITS", "MISSES", "CACHED"]
    stats = server.store.stats[("sess-c", "main", MODEL)]
    assert stats.prefilled_tokens and stats.cached_tokens  # the engine said, every turn
    share = round(100 * stats.cached_tokens / (stats.cached_tokens + stats.prefilled_tokens))
    assert re.split(r"\s{2,}", row)[4:8] == ["3", "unchained", "-", f"{share}%"]
    [agent] = json.loads(ok(await run("sessions", "--json", "--admin-listen",
                                      admin_address(server))))["sessions"][0]["agents"]
    assert (agent["misses"], agent["unchained_turns"], agent["cached_percent"]) == \
        ({}, 3, share)


def test_the_hits_cell_of_a_session_that_moved_between_kinds_of_upstream():
    entries = [{"session": "s", "agents": [
        {"agent": "main", "model": "m", "turns": 5, "chain_hits": 2, "unchained_turns": 2,
         "misses": {"no_node": 1}, "cached_percent": 91},
        {"agent": "old", "model": "m", "turns": 2, "chain_hits": 1, "misses": {"no_node": 1}}]}]
    rows = [re.split(r"\s{2,}", line)[4:8]
            for line in format_sessions(entries, now=100.0).splitlines()[1:]]
    assert rows == [["5", "2 (+2 unchained)", "no_node:1", "91%"],
                    ["2", "1", "no_node:1", "-"]]


def test_sessions_table_shows_the_last_turns_prefill():
    """What the engine prefilled and found cached on the last turn; ``-`` where it did
    not say (LM Studio's cached count alone, or nothing at all)."""
    assert last_prefill({"prefilled_tokens": 20, "cached_tokens": 308, "prefill_ms": 41.0,
                         "at": 9.0}) == "20/308"
    assert last_prefill({"prefilled_tokens": None, "cached_tokens": 870}) == "-/870"
    assert last_prefill({"prefilled_tokens": None, "cached_tokens": None}) == "-"
    assert last_prefill(None) == "-"
    entries = [{"session": "s", "agents": [{"agent": "main", "model": "m", "turns": 2,
                                            "last_used": 95.0, "last_turn": {
                                                "prefilled_tokens": 20, "cached_tokens": 308,
                                                "prefill_ms": 41.0, "at": 95.0}}]}]
    [row] = format_sessions(entries, now=100.0).splitlines()[1:]
    assert re.split(r"\s{2,}", row)[-2:] == ["20/308", "5s ago"]


def test_sessions_table_names_the_fronts():
    entries = [{"session": "019a4f0e-7c1b", "fronts": ["openai_responses"], "agents": [
                   {"agent": "main", "model": "m", "turns": 2, "fronts": ["openai_responses"],
                    "last_used": 95.0}]},
               {"session": "mixed", "agents": [
                   {"agent": "main", "model": "m", "fronts": ["openai_chat", "anthropic"]}]},
               {"session": "before-fronts", "agents": [{"agent": "main", "model": "m"}]},
               {"session": "config-only", "agents": [], "last_used": None}]
    rows = [re.split(r"\s{2,}", line)[:3]
            for line in format_sessions(entries, now=100.0).splitlines()[1:]]
    assert rows == [["019a4f0e-7c1b", "openai_responses", "main"],
                    ["mixed", "openai_chat,anthropic", "main"],
                    ["before-fronts", "-", "main"], ["config-only", "-", "-"]]


async def test_reset_one_session_then_all(lmsd, emulator):
    await converse(lmsd, emulator, "sess-a", turns=2)
    await converse(lmsd, emulator, "sess-b", turns=1)
    admin = admin_address(lmsd)
    assert ok(await run("reset", "sess-a", "--admin-listen", admin)) == \
        "reset session sess-a: 2 chain nodes dropped\n"
    data = json.loads(ok(await run("sessions", "--json", "--admin-listen", admin)))
    assert [s["session"] for s in data["sessions"]] == ["sess-b"]
    assert ok(await run("reset", "--all", "--admin-listen", admin)) == \
        "reset all sessions: 1 chain node dropped\n"
    assert ok(await run("sessions", "--admin-listen", admin)) == "no sessions\n"
    assert json.loads(ok(await run("sessions", "--json", "--admin-listen", admin))) == \
        {"sessions": []}


async def test_reset_without_a_session_asks_for_all(lmsd, emulator):
    await converse(lmsd, emulator, "sess-a", turns=1)
    result = await run("reset", "--admin-listen", admin_address(lmsd))
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr.decode() == \
        "lmsd: reset: name a SESSION_ID, or use --all to reset every session\n"
    assert lmsd.store.stats  # nothing was reset


async def test_sessions_limit_and_active(lmsd, emulator):
    for name in ("sess-old", "sess-mid", "sess-new"):
        await converse(lmsd, emulator, name, turns=1)
    old = next(s for k, s in lmsd.store.stats.items() if k[0] == "sess-old")
    old.last_used -= 2 * 3600  # used two hours ago: not active
    admin = ["--admin-listen", admin_address(lmsd)]

    async def names(*args: str) -> list[str]:
        data = json.loads(ok(await run("sessions", "--json", *args, *admin)))
        return [s["session"] for s in data["sessions"]]

    assert await names() == ["sess-new", "sess-mid", "sess-old"]
    assert await names("--limit", "2") == ["sess-new", "sess-mid"]
    assert await names("--active") == ["sess-new", "sess-mid"]
    rows = ok(await run("sessions", "--active", "--limit", "1", *admin)).splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["sess-new"]


@pytest.mark.parametrize("name", [".", "..", "./", "%2e", "a/..", "abc\n"])
async def test_reset_of_a_dot_or_other_non_id_resets_nothing(lmsd, emulator, name):
    """``lmsd reset .`` became ``DELETE /sessions/.``, which the HTTP client normalized to
    ``/sessions/``: every session was reset. Only ``--all`` resets them all."""
    await converse(lmsd, emulator, "sess-a", turns=1)
    result = await run("reset", name, "--admin-listen", admin_address(lmsd))
    assert (result.returncode, result.stdout) == (1, b"")
    [line] = result.stderr.decode().splitlines()
    assert line.startswith("lmsd: session id: use 1-128 letters")
    assert repr(name) in line and "--all" in line
    assert any(k[0] == "sess-a" for k in lmsd.store.stats)  # nothing was reset


async def test_record_of_a_dot_records_nothing(lmsd):
    """``lmsd record .`` was ``PUT /sessions/./record``, normalized to ``/sessions/record``:
    it started recording a session named "record"."""
    result = await run("record", ".", "--admin-listen", admin_address(lmsd))
    assert (result.returncode, result.stdout) == (1, b"")
    assert result.stderr.decode().startswith("lmsd: session id: use 1-128 letters")


async def test_the_admin_api_resets_all_only_on_its_own_path(lmsd, emulator):
    """``/sessions/`` and dot segments are not ``/sessions``: nothing is reset."""
    await converse(lmsd, emulator, "sess-a", turns=1)
    async with httpx.AsyncClient(base_url=lmsd.admin_url) as http:
        for path in ("/sessions/", "/sessions/%2E", "/sessions/%2e%2e"):
            answer = await http.delete(path)
            assert answer.status_code in (400, 404), (path, answer.text)
    assert any(k[0] == "sess-a" for k in lmsd.store.stats)


async def test_reset_of_a_malformed_session_id_is_one_line(lmsd):
    result = await run("reset", "not a session!", "--admin-listen", admin_address(lmsd))
    assert result.returncode == 1
    assert result.stdout == b""
    [line] = result.stderr.decode().splitlines()
    assert line.startswith("lmsd: session id: use 1-128 letters")
    assert "'not a session!'" in line  # checked before any request: see the test above


def test_relative_times_and_durations():
    assert ago(None, 100.0) == "-"
    assert ago(99.5, 100.0) == "just now"
    assert ago(88.0, 100.0) == "12s ago"
    assert ago(100.0 - 185, 100.0) == "3m ago"
    assert ago(100.0 - 2 * 3600, 100.0) == "2h ago"
    assert ago(100.0 - 4 * 86400, 100.0) == "4d ago"
    assert duration(45) == "45s"
    assert duration(192) == "3m 12s"
    assert duration(7200) == "2h"
    assert format_sessions([]) == "no sessions"
