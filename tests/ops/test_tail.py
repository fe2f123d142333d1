"""``lmsd tail``, run as a real subprocess against an in-process lmsd and the LM Studio
emulator: live events, filters, escapes, colors, the daemon stopping and restarting."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess

import httpx
import pytest
import trio

from lmsd.ops.tail import _Printer, format_event
from lmsd.ops.text import use_color
from lmsd.sessions.config import SessionConfig
from tests.ops.lmsd_cli import (
    LMSD,
    MODEL,
    Tail,
    admin_address,
    clean_env,
    converse,
    event_types,
    is_end,
    read_all,
    run,
    tailing,
)
from tests.support.processes import free_port


async def test_tail_json_prints_live_events(lmsd, emulator):
    async with tailing(lmsd, "--json") as tail:
        await converse(lmsd, emulator, "sess-1", turns=1)
        lines = await tail.lines_until(is_end)
    types = event_types(lines)
    assert types[0] == "request.start"
    assert "chain.decision" in types
    end = json.loads(lines[-1])
    assert end["session"] == "sess-1"
    assert end["level"] == "info"
    assert isinstance(end["ts"], float)


async def test_tail_replays_recent_history_first(lmsd, emulator):
    await converse(lmsd, emulator, "before", turns=1)  # happens before tail connects
    async with tailing(lmsd, "--json", "--replay", "50", "--type", "request.end") as tail:
        lines = await tail.lines_until(is_end)
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
        lines = await tail.lines_until(is_end)
    assert set(event_types(lines)) == {"chain.decision", "request.end"}


async def test_tail_session_filter(lmsd, emulator):
    async with tailing(lmsd, "--json", "--session", "wanted") as tail:
        await converse(lmsd, emulator, "unwanted", turns=1)
        await converse(lmsd, emulator, "wanted", turns=1)
        lines = await tail.lines_until(is_end)
    assert event_types(lines)[0] == "request.start"
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


async def test_tail_ends_with_one_line_when_the_daemon_stops(start_lmsd, emulator):
    server = await start_lmsd(emulator.url)
    bus = server.bus
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            results: list[subprocess.CompletedProcess] = []

            async def tail() -> None:
                results.append(await run("tail", "--admin-listen", admin_address(server)))

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
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())
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
            errors = (await read_all(process.stderr)).decode()
            assert await process.wait() == 0, errors
    finally:
        if process.poll() is None:
            process.kill()
            await process.wait()
    assert errors == ("lmsd: the event stream ended: the daemon stopped; reconnecting "
                      "(Ctrl-C to stop)\n"
                      f"lmsd: reconnected to http://{admin_listen}\n")
