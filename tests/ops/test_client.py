"""The admin client commands (status, sessions, reset, tail, env), run as real subprocesses
against an in-process lmsd and the LM Studio emulator."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import anthropic
import httpx
import pytest
import trio

from lmsd import __version__
from lmsd.ops.client import ago, duration, format_sessions, last_prefill, ratio
from lmsd.ops.tail import _Printer, format_event, use_color
from lmsd.protocol.compaction import simulate, target_threshold
from lmsd.sessions.config import SessionConfig
from tests.support.conversation import Conversation, tool_turns
from tests.support.processes import free_port

LMSD = [sys.executable, "-m", "lmsd"]
NOT_RUNNING = ("lmsd: the daemon is not running (nothing answers at http://127.0.0.1:{port}); "
               "start it with: lmsd serve\n")
REFUSED = "lmsd: the admin API refused the token (set LMSD_ADMIN_TOKEN)\n"
MODEL = "qwen/qwen3-coder-30b"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMSD_")}
    env.pop("NO_COLOR", None)
    return {**env, **extra}


def _admin(server: Any) -> str:
    return urlsplit(server.admin_url).netloc


async def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return await trio.run_process([*LMSD, *args], capture_stdout=True, capture_stderr=True,
                                  check=False, env=_env() if env is None else env)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    return result.stdout.decode()


async def converse(server: Any, emulator: Any, session: str = "sess-1", turns: int = 2,
                   agent: str | None = None) -> None:
    emulator.script(*tool_turns(turns))
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="x",
                                        max_retries=0) as client:
        chat = Conversation(client, session=session, agent=agent)
        await chat.send("start")
        for _ in range(turns - 1):
            await chat.send()


class Tail:
    """A running ``lmsd tail`` whose stdout is read line by line."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.buffer = b""

    async def line(self) -> str:
        assert self.process.stdout is not None
        while b"\n" not in self.buffer:
            chunk = await self.process.stdout.receive_some()
            assert chunk, "lmsd tail ended early"
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    async def lines_until(self, last: Callable[[str], bool]) -> list[str]:
        lines = []
        with trio.fail_after(30):
            while not lines or not last(lines[-1]):
                lines.append(await self.line())
        return lines


async def _read_all(stream: Any) -> bytes:
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    return data


@asynccontextmanager
async def tailing(server: Any, *args: str, env: dict[str, str] | None = None
                  ) -> AsyncIterator[Tail]:
    """Start ``lmsd tail``, wait until it is subscribed; at the end, Ctrl-C it."""
    bus = server.bus
    before = bus.subscribers
    if not any(a.startswith("--replay") for a in args):
        args = ("--replay", "0", *args)  # live events only, unless a test asks
    process = await trio.lowlevel.open_process(
        [*LMSD, "tail", "--admin-listen", _admin(server), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env() if env is None else env)
    try:
        with trio.fail_after(30):
            while bus.subscribers <= before:
                if process.poll() is not None:
                    assert process.stderr is not None
                    pytest.fail(f"lmsd tail exited: {await _read_all(process.stderr)!r}")
                await trio.sleep(0.02)
        yield Tail(process)
        process.send_signal(signal.SIGINT)
        with trio.fail_after(30):
            assert process.stderr is not None
            errors = await _read_all(process.stderr)
            assert await process.wait() == 0, errors
        assert errors == b""  # Ctrl-C is quiet
    finally:
        if process.poll() is None:
            process.kill()
            await process.wait()


def _types(lines: list[str]) -> list[str]:
    return [json.loads(line)["type"] for line in lines]


def _is_end(line: str) -> bool:
    return json.loads(line)["type"] == "request.end"


# -- status -----------------------------------------------------------------------------------


async def test_status_pretty_and_json(lmsd, emulator):
    await converse(lmsd, emulator, turns=2)
    text = ok(await run("status", "--admin-listen", _admin(lmsd)))
    assert text.startswith(f"lmsd {__version__} (pid {os.getpid()}), up ")
    assert f"upstream  {emulator.url} (found by: config), reachable" in text
    assert "dialect   responses (LM Studio answered /lmstudio-greeting: its /v1/responses " \
        "chains turns (previous_response_id), so it prefills only what is new), chaining on" \
        in text
    assert f"models    {MODEL}  context 32768 / 262144  loaded" in text
    assert "watcher   not enforcing min_context 32768; reloading: none; backing off: none" \
        in text
    assert "requests  2 served, 0 errors, 0 in flight, 0 open streams" in text
    assert f"store     2 chain nodes in 1 chain, persistent at {lmsd.store.path}" in text

    data = json.loads(ok(await run("status", "--json", "--admin-listen", _admin(lmsd))))
    assert data["version"] == __version__
    assert data["upstream"]["source"] == "config"
    assert data["upstream"]["reachable"] is True
    assert [m["key"] for m in data["models"]] == [MODEL]
    assert data["requests"]["requests"] == 2
    assert data["store"]["nodes"] == 2


# -- sessions and reset -----------------------------------------------------------------------


async def test_sessions_pretty_and_json(lmsd, emulator):
    await converse(lmsd, emulator, "sess-1", turns=3)
    await converse(lmsd, emulator, "sess-1", turns=1, agent="agent-7")
    data = json.loads(ok(await run("sessions", "--json", "--admin-listen", _admin(lmsd))))
    [entry] = data["sessions"]
    assert entry["session"] == "sess-1"
    agents = {a["agent"]: a for a in entry["agents"]}
    assert set(agents) == {"main", "agent-7"}
    assert agents["main"]["turns"] == 3
    assert agents["main"]["chain_hits"] == 2
    assert entry["fronts"] == agents["main"]["fronts"] == ["anthropic"]

    text = ok(await run("sessions", "--admin-listen", _admin(lmsd)))
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
    text = ok(await run("sessions", "--admin-listen", _admin(server)))
    header, row = text.splitlines()
    assert header.split()[4:8] == ["TURNS", "HITS", "MISSES", "CACHED"]
    stats = server.store.stats[("sess-c", "main", MODEL)]
    assert stats.prefilled_tokens and stats.cached_tokens  # the engine said, every turn
    share = round(100 * stats.cached_tokens / (stats.cached_tokens + stats.prefilled_tokens))
    assert re.split(r"\s{2,}", row)[4:8] == ["3", "unchained", "-", f"{share}%"]
    [agent] = json.loads(ok(await run("sessions", "--json", "--admin-listen",
                                      _admin(server))))["sessions"][0]["agents"]
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
    admin = _admin(lmsd)
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
    result = await run("reset", "--admin-listen", _admin(lmsd))
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr.decode() == \
        "lmsd: reset: name a SESSION_ID, or use --all to reset every session\n"
    assert lmsd.store.stats  # nothing was reset


async def test_sessions_limit_and_active(lmsd, emulator):
    for name in ("sess-old", "sess-mid", "sess-new"):
        await converse(lmsd, emulator, name, turns=1)
    old = next(s for k, s in lmsd.store.stats.items() if k[0] == "sess-old")
    old.last_used -= 2 * 3600  # used two hours ago: not active
    admin = ["--admin-listen", _admin(lmsd)]

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
    result = await run("reset", name, "--admin-listen", _admin(lmsd))
    assert (result.returncode, result.stdout) == (1, b"")
    [line] = result.stderr.decode().splitlines()
    assert line.startswith("lmsd: session id: use 1-128 letters")
    assert repr(name) in line and "--all" in line
    assert any(k[0] == "sess-a" for k in lmsd.store.stats)  # nothing was reset


async def test_record_of_a_dot_records_nothing(lmsd):
    """``lmsd record .`` was ``PUT /sessions/./record``, normalized to ``/sessions/record``:
    it started recording a session named "record"."""
    result = await run("record", ".", "--admin-listen", _admin(lmsd))
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
    result = await run("reset", "not a session!", "--admin-listen", _admin(lmsd))
    assert result.returncode == 1
    assert result.stdout == b""
    [line] = result.stderr.decode().splitlines()
    assert line.startswith("lmsd: session id: use 1-128 letters")
    assert "'not a session!'" in line  # checked before any request: see the test above


# -- tail -------------------------------------------------------------------------------------


async def test_tail_json_prints_live_events(lmsd, emulator):
    async with tailing(lmsd, "--json") as tail:
        await converse(lmsd, emulator, "sess-1", turns=1)
        lines = await tail.lines_until(_is_end)
    types = _types(lines)
    assert types[0] == "request.start"
    assert "chain.decision" in types
    end = json.loads(lines[-1])
    assert end["session"] == "sess-1"
    assert end["level"] == "info"
    assert isinstance(end["ts"], float)


async def test_tail_replays_recent_history_first(lmsd, emulator):
    await converse(lmsd, emulator, "before", turns=1)  # happens before tail connects
    async with tailing(lmsd, "--json", "--replay", "50", "--type", "request.end") as tail:
        lines = await tail.lines_until(_is_end)
    assert json.loads(lines[0])["session"] == "before"


async def test_tail_pretty_lines(lmsd, emulator):
    async with tailing(lmsd) as tail:
        await converse(lmsd, emulator, "sess-1", turns=1)
        lines = await tail.lines_until(lambda line: " request.end " in line)
    for line in lines:
        assert re.match(r"^\d\d:\d\d:\d\d [a-z_]+\.[a-z_.]+ \w+=", line), line
        assert "\x1b[" not in line  # stdout is not a terminal: no colors
    assert lines[0].split()[1] == "request.start"
    assert "session=sess-1" in lines[-1].split()


async def test_tail_type_filter(lmsd, emulator):
    async with tailing(lmsd, "--json", "--type", "chain", "--type", "request.end") as tail:
        await converse(lmsd, emulator, "sess-1", turns=1)
        lines = await tail.lines_until(_is_end)
    assert set(_types(lines)) == {"chain.decision", "request.end"}


async def test_tail_session_filter(lmsd, emulator):
    async with tailing(lmsd, "--json", "--session", "wanted") as tail:
        await converse(lmsd, emulator, "unwanted", turns=1)
        await converse(lmsd, emulator, "wanted", turns=1)
        lines = await tail.lines_until(_is_end)
    assert _types(lines)[0] == "request.start"
    assert {json.loads(line)["session"] for line in lines} == {"wanted"}


#: A session config value set before lmsd refused control characters (or by a tool that
#: wrote the store): clear screen, retitle, bell, C1 CSI, DEL, a bidi override.
HOSTILE = "\x1b[2J\x1b]0;pwned\x07\x9b31m\x7f\u202eevil"
RAW = ("\x1b", "\x07", "\x9b", "\x7f", "\u202e")


@pytest.mark.parametrize("as_json", [False, True])
async def test_tail_shows_escape_sequences_from_a_session_config_escaped(lmsd, emulator,
                                                                         as_json):
    await lmsd.store.set_config("sess-x", SessionConfig(model=HOSTILE))
    args = ("--json",) if as_json else ()
    async with tailing(lmsd, *args) as tail:
        async with httpx.AsyncClient(base_url=lmsd.url, timeout=30) as http:
            await http.post("/session/sess-x/v1/messages", json={
                "model": MODEL, "max_tokens": 16, "messages": [{"role": "user",
                                                               "content": "hi"}]})
        lines = await tail.lines_until(lambda line: "request.end" in line
                                       or "request.rejected" in line)
    text = "\n".join(lines)
    assert not any(c in text for c in RAW), text
    if as_json:  # the same JSON, with the escapes JSON has
        assert any(HOSTILE in str(v) for line in lines for v in json.loads(line).values())
    else:
        assert "\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\x7f\\u202eevil" in text


def test_event_lines_escape_control_characters():
    line = format_event({"type": "session.config", "model": HOSTILE, "tools": [HOSTILE],
                         "bare": "ab\x1bc", "t\x1bk": 1})
    assert not any(c in line for c in RAW)
    assert 'model="\\x1b[2J' in line and 'bare="ab\\x1bc"' in line
    assert "t\\x1bk=1" in line
    assert '"\\u001b[2J' in line and "\\u202eevil" in line  # JSON escapes in a list
    out = io.StringIO()
    _Printer(True, False, out).show({"type": "x", "model": HOSTILE})
    assert not any(c in out.getvalue() for c in RAW)
    assert json.loads(out.getvalue())["model"] == HOSTILE


def test_event_lines_are_colored_by_level_and_type():
    start = {"ts": 1.0, "type": "request.start", "level": "info", "session": "s",
             "chain": None, "messages": 3, "note": "two words"}
    line = format_event(start)
    assert re.fullmatch(r"\d\d:\d\d:\d\d request\.start session=s messages=3 "
                        r'note="two words"', line)
    assert "\x1b[36mrequest.start\x1b[0m" in format_event(start, color=True)
    assert "\x1b[35mmodel.loaded" in format_event({"type": "model.loaded"}, color=True)
    assert "\x1b[32mchain.decision" in format_event({"type": "chain.decision"}, color=True)
    failed = {"type": "request.end", "level": "error", "error_type": "api_error"}
    assert "\x1b[31mrequest.end" in format_event(failed, color=True)
    assert " request.end level=error error_type=api_error" in format_event(failed)
    warned = format_event({"type": "store.unavailable", "level": "warning"}, color=True)
    assert "\x1b[33mstore.unavailable" in warned
    dropped = format_event({"type": "dropped", "count": 7, "reason": "too slow"}, color=True)
    assert "\x1b[33mdropped\x1b[0m count=7" in dropped


def test_color_only_on_a_terminal_without_no_color():
    class Stream(io.StringIO):
        def __init__(self, tty: bool) -> None:
            super().__init__()
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    assert use_color(Stream(tty=True), {})
    assert not use_color(Stream(tty=True), {"NO_COLOR": "1"})
    assert not use_color(Stream(tty=False), {})


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


# -- env --------------------------------------------------------------------------------------


async def test_env_prints_the_claude_code_exports():
    port = _closed_port()
    text = ok(await run("env", "--listen", "127.0.0.1:4000",
                        env=_env(LMSD_ADMIN_LISTEN=f"127.0.0.1:{port}")))
    assert text.splitlines() == [
        '# Point Claude Code at lmsd: eval "$(lmsd env)"',
        f"# Compaction sized for 32768 tokens: the daemon is not running (nothing answers "
        f"at http://127.0.0.1:{port}): assuming min_context 32768; run lmsd env again once "
        f"it runs",
        "export ANTHROPIC_BASE_URL=http://127.0.0.1:4000",
        "export ANTHROPIC_AUTH_TOKEN=lmsd",
        "export CLAUDE_CODE_ATTRIBUTION_HEADER=0",
        "export CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
        "export CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1",
        "export API_TIMEOUT_MS=600000",
        "export CLAUDE_CODE_SIMPLE_SYSTEM_PROMPT=1",
        "export CLAUDE_CODE_DISABLE_1M_CONTEXT=1",
        "export CLAUDE_CODE_MAX_OUTPUT_TOKENS=4096",
        "export CLAUDE_CODE_AUTO_COMPACT_WINDOW=100000",
        "export CLAUDE_AUTOCOMPACT_PCT_OVERRIDE=16.34",
    ]
    shell = await trio.run_process(
        ["sh", "-c", 'eval "$1"; printf "%s %s" "$ANTHROPIC_BASE_URL" "$API_TIMEOUT_MS"',
         "sh", text], capture_stdout=True)
    assert shell.stdout == b"http://127.0.0.1:4000 600000"


async def test_env_sizes_compaction_for_the_running_daemons_context(start_lmsd, emulator):
    """By default Claude Code runs on the loaded model's own id, with the lean system prompt
    and the real window (no percentage); ``--claude-names`` keeps Claude's names and full
    prompt, with the percentage that puts compaction at the same point."""
    emulator.models["qwen/qwen3-coder-30b"].context_length = 65536
    server = await start_lmsd(emulator.url)
    with trio.fail_after(10):
        while not server.router.backends[0].watcher.models:
            await trio.sleep(0.05)
    env = _env(LMSD_ADMIN_LISTEN=_admin(server))
    lines = ok(await run("env", env=env)).splitlines()
    assert lines[1] == ("# Compaction sized for 65536 tokens: qwen/qwen3-coder-30b is loaded "
                        "with 65536 tokens of context")
    assert lines[-7:] == ["export API_TIMEOUT_MS=600000",
                          "export ANTHROPIC_MODEL=qwen/qwen3-coder-30b",
                          "export CLAUDE_CODE_SIMPLE_SYSTEM_PROMPT=1",
                          "export CLAUDE_CODE_DISABLE_1M_CONTEXT=1",
                          "export CLAUDE_CODE_MAX_OUTPUT_TOKENS=8192",
                          "export CLAUDE_CODE_MAX_CONTEXT_TOKENS=65536",
                          "export CLAUDE_CODE_AUTO_COMPACT_WINDOW=100000"]
    assert simulate(exports(lines)).threshold == target_threshold(65536)
    names = ok(await run("env", "--claude-names", env=env)).splitlines()
    assert names[-5:] == ["export API_TIMEOUT_MS=600000",
                          "export CLAUDE_CODE_DISABLE_1M_CONTEXT=1",
                          "export CLAUDE_CODE_MAX_OUTPUT_TOKENS=8192",
                          "export CLAUDE_CODE_AUTO_COMPACT_WINDOW=100000",
                          "export CLAUDE_AUTOCOMPACT_PCT_OVERRIDE=48.3"]
    assert simulate(exports(names)).threshold <= target_threshold(65536)
    data = json.loads(ok(await run("env", "--json", "--model", "qwen/qwen3-coder-30b",
                                   env=env)))
    assert list(data) == ["env"]
    assert data["env"]["ANTHROPIC_MODEL"] == "qwen/qwen3-coder-30b"
    assert data["env"]["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == "65536"
    assert "CLAUDE_AUTOCOMPACT_PCT_OVERRIDE" not in data["env"]
    both = await run("env", "--claude-names", "--model", MODEL, env=env)
    assert both.returncode == 2 and b"not allowed with argument" in both.stderr


def exports(lines: list[str]) -> dict[str, str]:
    """The variables ``export`` lines set."""
    return dict(line.removeprefix("export ").split("=", 1) for line in lines
                if line.startswith("export "))


async def test_env_model_refuses_a_model_nobody_serves(start_lmsd, emulator):
    """``lmsd env --model ID`` asks the running lmsd: an id no upstream serves is an
    error naming what is served, and nothing to eval is printed."""
    server = await start_lmsd(emulator.url)
    with trio.fail_after(10):
        while not server.router.backends[0].watcher.models:
            await trio.sleep(0.05)
    env = _env(LMSD_ADMIN_LISTEN=_admin(server),
               LMSD_LISTEN=server.url.removeprefix("http://"))
    for extra in ((), ("--codex",)):
        result = await run("env", *extra, "--model", "qwen/qwen3-coder-3b", env=env)
        assert result.returncode == 1 and result.stdout == b""
        assert result.stderr.decode() == (
            f"lmsd: env --model: no upstream of the lmsd at {server.url} serves the model "
            f"'qwen/qwen3-coder-3b'; it serves: {MODEL}, google/gemma-3-12b\n")
    served = ok(await run("env", "--model", MODEL, env=env))
    assert f"export ANTHROPIC_MODEL={MODEL}" in served.splitlines()


async def test_env_codex_prints_the_config_toml_block(start_lmsd, emulator):
    emulator.models["qwen/qwen3-coder-30b"].context_length = 65536
    server = await start_lmsd(emulator.url)
    with trio.fail_after(10):
        while not server.router.backends[0].watcher.models:
            await trio.sleep(0.05)
    listen = server.url.removeprefix("http://")
    text = ok(await run("env", "--codex", "--listen", listen,
                        env=_env(LMSD_ADMIN_LISTEN=_admin(server))))
    data = tomllib.loads(text)
    assert data["model"] == "qwen/qwen3-coder-30b" and data["model_provider"] == "lmsd"
    assert data["model_context_window"] == 65536
    assert data["model_auto_compact_token_limit"] == 52428
    provider = data["model_providers"]["lmsd"]
    assert provider["base_url"] == server.url + "/v1"
    assert provider["wire_api"] == "responses"


async def test_env_on_a_wildcard_listen_address_points_at_loopback(tmp_path):
    text = ok(await run("env", env=_env(LMSD_LISTEN="0.0.0.0:19234")))
    assert "export ANTHROPIC_BASE_URL=http://127.0.0.1:19234" in text.splitlines()
    config = tmp_path / "lmsd.toml"
    config.write_text('listen = "[::]:5555"\n')
    text = ok(await run("env", "--shell", "fish", "--config", str(config)))
    lines = text.splitlines()
    assert lines[0].startswith("# ")
    assert "set -gx ANTHROPIC_BASE_URL http://127.0.0.1:5555" in lines
    assert "set -gx API_TIMEOUT_MS 600000" in lines


async def test_env_needs_no_daemon():
    port = _closed_port()
    result = await run("env", env=_env(LMSD_ADMIN_LISTEN=f"127.0.0.1:{port}"))
    assert "export ANTHROPIC_BASE_URL=http://127.0.0.1:19234" in ok(result).splitlines()
    result = await run("env", "--json", env=_env(LMSD_ADMIN_LISTEN=f"127.0.0.1:{port}"))
    assert result.returncode == 0
    assert json.loads(result.stdout)["env"]["CLAUDE_AUTOCOMPACT_PCT_OVERRIDE"] == "16.34"
    assert result.stderr.decode() == (
        f"lmsd: the daemon is not running (nothing answers at http://127.0.0.1:{port}): "
        f"assuming min_context 32768; run lmsd env again once it runs\n")


# -- errors and the token ---------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["sessions"],
                                     ["reset", "--all"], ["reset", "sess-1"], ["tail"],
                                     ["tail", "--json"]])
async def test_a_stopped_daemon_is_one_line(command):
    port = _closed_port()
    result = await run(*command, "--admin-listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode() == NOT_RUNNING.format(port=port)


async def test_a_stopped_daemon_found_through_the_environment():
    port = _closed_port()
    result = await run("status", env=_env(LMSD_ADMIN_LISTEN=f"127.0.0.1:{port}"))
    assert (result.returncode, result.stderr.decode()) == (1, NOT_RUNNING.format(port=port))


async def test_the_admin_token(start_lmsd, emulator, tmp_path):
    server = await start_lmsd(emulator.url, admin_token="s3cret")
    await converse(server, emulator, "sess-1", turns=1)
    admin = ["--admin-listen", _admin(server)]
    for command in (["status"], ["sessions", "--json"], ["reset", "sess-1"], ["tail"]):
        result = await run(*command, *admin)
        assert (result.returncode, result.stdout) == (1, b"")
        assert result.stderr.decode() == REFUSED
        wrong = await run(*command, *admin, env=_env(LMSD_ADMIN_TOKEN="guess"))
        assert wrong.returncode == 1
        assert wrong.stderr.decode() == \
            "lmsd: the admin API refused the token (check LMSD_ADMIN_TOKEN)\n"

    env = _env(LMSD_ADMIN_TOKEN="s3cret")
    assert "requests  1 served" in ok(await run("status", *admin, env=env))
    data = json.loads(ok(await run("sessions", "--json", *admin, env=env)))
    assert [s["session"] for s in data["sessions"]] == ["sess-1"]
    async with tailing(server, "--json", env=env) as tail:
        await converse(server, emulator, "sess-2", turns=1)
        lines = await tail.lines_until(_is_end)
    assert json.loads(lines[-1])["session"] == "sess-2"
    assert ok(await run("reset", "--all", *admin, env=env)) == \
        "reset all sessions: 2 chain nodes dropped\n"

    # the config file's admin_listen and admin_token serve as well
    config = tmp_path / "lmsd.toml"
    config.write_text(f'admin_listen = "{_admin(server)}"\nadmin_token = "s3cret"\n')
    data = json.loads(ok(await run("status", "--json", "--config", str(config))))
    assert data["settings"]["admin_token"] == "***"


async def test_tail_ends_with_one_line_when_the_daemon_stops(start_lmsd, emulator):
    server = await start_lmsd(emulator.url)
    bus = server.bus
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            results: list[subprocess.CompletedProcess] = []

            async def tail() -> None:
                results.append(await run("tail", "--admin-listen", _admin(server)))

            nursery.start_soon(tail)
            while not bus.subscribers:
                await trio.sleep(0.02)
            server.shutdown.set()
    [result] = results
    assert result.returncode == 1
    assert result.stderr.decode() == "lmsd: the event stream ended: the daemon stopped\n"


async def test_tail_follow_reconnects_after_a_restart(start_lmsd, emulator):
    admin_listen = f"127.0.0.1:{free_port()}"
    first = await start_lmsd(emulator.url, admin_listen=admin_listen)
    process = await trio.lowlevel.open_process(
        [*LMSD, "tail", "--follow", "--json", "--replay", "0", "--type", "request.end",
         "--admin-listen", admin_listen],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    try:
        tail = Tail(process)
        with trio.fail_after(30):
            while not first.bus.subscribers:
                await trio.sleep(0.02)
        await converse(first, emulator, "before", turns=1)
        assert json.loads(await tail.line())["session"] == "before"
        first.shutdown.set()
        with trio.fail_after(30):
            while first.bus.subscribers:
                await trio.sleep(0.02)
        second = await start_lmsd(emulator.url, admin_listen=admin_listen)
        with trio.fail_after(30):
            while not second.bus.subscribers:
                await trio.sleep(0.02)
        await converse(second, emulator, "after", turns=1)
        with trio.fail_after(30):
            assert json.loads(await tail.line())["session"] == "after"
        process.send_signal(signal.SIGINT)
        with trio.fail_after(30):
            assert process.stderr is not None
            errors = (await _read_all(process.stderr)).decode()
            assert await process.wait() == 0, errors
    finally:
        if process.poll() is None:
            process.kill()
            await process.wait()
    assert errors == ("lmsd: the event stream ended: the daemon stopped; reconnecting "
                      "(Ctrl-C to stop)\n"
                      f"lmsd: reconnected to http://{admin_listen}\n")


def test_status_lists_every_upstream_when_there_are_several():
    from lmsd.ops.client import format_status

    data = {"upstream": {"url": "http://a:1"}, "upstreams": [
        {"name": "desk", "url": "http://a:1", "api": "responses", "in_rotation": True,
         "in_flight": 2, "active_sessions": 3, "health": {"state": "closed"}},
        {"name": "lap", "url": "http://b:2", "api": "chat", "in_rotation": False,
         "in_flight": 0, "active_sessions": 1,
         "health": {"state": "open", "last_error": "connection refused"}}]}
    text = format_status(data)
    assert ("upstreams desk: http://a:1 responses, in rotation, 2 in flight, 3 active "
            "sessions") in text
    assert "lap: http://b:2 chat, OUT (connection refused), 0 in flight, 1 active session" \
        in text
    assert "upstreams" not in format_status({**data, "upstreams": data["upstreams"][:1]})


async def test_status_headline_speaks_for_every_upstream(start_lmsd, nursery):
    """Two upstreams, the first one stopped: the headline says one serves and one is not
    reachable (naming it and why), not "NOT reachable" for the whole daemon; each model
    line names the upstream that serves it."""
    from tests.emulator import Emulator, ModelSpec
    from tests.support.boxes import Box, upstreams

    a = Box(nursery, Emulator(models=[ModelSpec("alpha/coder")]), "a")
    b = Box(nursery, Emulator(models=[ModelSpec("beta/coder")]), "b")
    await a.start()
    await b.start()
    server = await start_lmsd(a.url, upstreams=upstreams(a, b), poll_interval="0.1")
    first, second = server.router.backends
    with trio.fail_after(10):
        while not (first.watcher.polls and second.watcher.polls):
            await trio.sleep(0.02)
    await a.stop()
    with trio.fail_after(10):
        while first.watcher.reachable is not False:
            await trio.sleep(0.02)
    text = ok(await run("status", "--admin-listen", _admin(server)))
    lines = text.splitlines()
    headline = next(line for line in lines if line.startswith("upstream "))
    assert re.fullmatch(r"upstream  2 upstreams: 1 serving, 1 not reachable \(a: .+\)",
                        headline), headline
    assert "NOT reachable" not in text
    assert f"a: {a.url} " in text and f"b: {b.url} " in text
    models = [line[10:] for line in lines[lines.index(next(
        line for line in lines if line.startswith("models "))):] if line[:10].strip() in
        ("models", "")]
    assert sorted(models) == [
        "alpha/coder on a  context 32768 / 262144  loaded (as last seen: a not reachable)",
        "beta/coder on b  context 32768 / 262144  loaded"]
    assert "; last error (a): " in text  # the watcher line is the first upstream's


def test_the_upstreams_headline_counts_each_condition_and_names_why():
    from lmsd.ops.client import upstreams_headline

    listed = [
        {"name": "desk", "reachable": True, "in_rotation": True},
        {"name": "lap", "reachable": False, "in_rotation": False,
         "health": {"last_error": "connection refused"}},
        {"name": "cloud", "reachable": True, "in_rotation": True, "refused": "wrong key"},
        {"name": "new", "reachable": None, "in_rotation": True},
        {"name": "flaky", "reachable": True, "in_rotation": False,
         "health": {"state": "open", "last_error": "timed out"}},
        {"name": "also", "reachable": True, "in_rotation": True}]
    assert upstreams_headline(listed) == (
        "6 upstreams: 2 serving, 1 not checked yet (new), 1 refused (cloud: wrong key), "
        "1 not reachable (lap: connection refused), 1 out of rotation (flaky: timed out)")
