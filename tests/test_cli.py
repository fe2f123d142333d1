"""The command line's options: help texts, argument checks, the event type list, and
the formatting of ``status`` and ``sessions``."""

from __future__ import annotations

import argparse
import re
import socket
from pathlib import Path

import pytest

from lmsd import cli
from lmsd.bus import EVENT_TYPES, known_type
from lmsd.config import FILE_ONLY, PARSERS, SECRET_KEYS
from lmsd.ops.sessions import ACTIVE_WINDOW, select_sessions
from lmsd.ops.status import format_status

SOURCE = Path(cli.__file__).parent


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_every_serve_option_says_what_it_does():
    serve = _subparser("serve")
    options = [a for a in serve._actions if a.option_strings and a.dest != "help"]
    assert {a.dest for a in options} == set(PARSERS) - SECRET_KEYS - FILE_ONLY
    for action in options:
        text = action.help or ""
        what = text.split("(env ")[0].strip()
        assert len(what.split()) >= 3, f"{action.option_strings[0]}: {text!r}"
        assert f"env LMSD_{action.dest.upper()}" in text


def test_the_event_type_list_matches_the_source():
    """Every ``event("x.y", ...)`` in lmsd is listed, and nothing listed is gone."""
    emitted: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        emitted |= set(re.findall(r'\bevent\(\s*"([a-z_]+\.[a-z_.]+)"', path.read_text()))
    assert emitted - EVENT_TYPES == set()
    assert EVENT_TYPES - emitted == {"dropped"}


@pytest.mark.parametrize("kind", ["request", "request.end", "model", "chain.decision",
                                  "dropped"])
def test_known_event_types_and_families(kind):
    assert known_type(kind)


@pytest.mark.parametrize("kind", ["requests", "req", "request.ended", "request.", "modle"])
def test_unknown_event_types(kind):
    assert not known_type(kind)


def test_tail_refuses_an_unknown_type_with_one_line(capsys):
    code = cli.main(["tail", "--type", "request,requets.end", "--admin-listen",
                     _closed_port()])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    [line] = err.splitlines()
    assert line.startswith("lmsd: tail --type: unknown event type 'requets.end'; the types "
                           "are cache, chain, child, config, daemon, ")


def test_reset_needs_a_session_or_all(capsys):
    port = _closed_port()
    assert cli.main(["reset", "--admin-listen", port]) == 2
    assert capsys.readouterr() == (
        "", "lmsd: reset: name a SESSION_ID, or use --all to reset every session\n")
    assert cli.main(["reset", "sess-1", "--all", "--admin-listen", port]) == 2
    assert capsys.readouterr().err == "lmsd: reset: give a SESSION_ID or --all, not both\n"


def test_status_shows_the_dialect_and_why():
    data = {"upstream": {"url": "http://127.0.0.1:1234", "source": "config", "reachable": True,
                         "api": "responses", "api_why": "LM Studio answered /lmstudio-greeting",
                         "chaining": True}}
    assert "\ndialect   responses (LM Studio answered /lmstudio-greeting), chaining on" in \
        format_status(data)
    data["upstream"].update(api="chat", api_why="configured (upstream_api)", chaining=False)
    assert "\ndialect   chat (configured (upstream_api)), chaining off" in format_status(data)
    data["upstream"].update(api=None, api_why="decided when the upstream first answers")
    assert "\ndialect   not decided yet (decided when the upstream first answers)" in \
        format_status(data)


def test_select_sessions_by_recency():
    now = 1_000_000.0
    entries = [{"session": "old", "last_used": now - ACTIVE_WINDOW - 1},
               {"session": "new", "last_used": now - 5},
               {"session": "configured only", "last_used": None},
               {"session": "mid", "last_used": now - 60}]

    def names(**kw):
        return [e["session"] for e in select_sessions(entries, now=now, **kw)]

    assert names() == ["new", "mid", "old", "configured only"]
    assert names(limit=2) == ["new", "mid"]
    assert names(active=True) == ["new", "mid"]
    assert names(active=True, limit=1) == ["new"]


def test_sessions_limit_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["sessions", "--limit", "0"])
    assert exc.value.code == 2
    assert "expected a positive integer, got '0'" in capsys.readouterr().err


def test_every_option_of_every_command_has_a_help_text():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        for action in command._actions:
            assert action.help and action.help.strip(), f"lmsd {name} {action.dest}"
