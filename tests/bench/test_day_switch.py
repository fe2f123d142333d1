"""bench/day_switch.py's pure parts: the day it sends (bench/day_switch_trace.py) and the
figures it makes of a run (bench/day_switch_report.py), without a box or an engine."""

from __future__ import annotations

import json
import tomllib
from itertools import pairwise
from pathlib import Path

import pytest

from bench.day_switch_llama import (
    NAME_A,
    NAME_B,
    _context,
    commands,
    config_toml,
    peak_engines,
    read_log,
)
from bench.day_switch_report import (
    Engine,
    Turn,
    attribute,
    new_tokens,
    ratios,
    summarize,
    table,
    turns_table,
)
from bench.day_switch_trace import MODEL_A, MODEL_B, build_day


def test_the_day_switches_to_b_and_back_in_one_growing_session() -> None:
    steps = build_day(on_a=5, on_b=3, back=3, idle=7.0)
    assert [s.name for s in steps] == [
        "A1", "A2", "A3", "subagent", "A4", "S2-1", "A5", "B6", "B7", "B8", "A9", "idle",
        "A10", "S2-2", "A11"]
    main = [s for s in steps if s.main]
    assert [s.model for s in main] == [MODEL_A] * 5 + [MODEL_B] * 3 + [MODEL_A] * 3
    assert {s.name: s.mark for s in steps if s.mark} == {"B6": "switch", "A9": "back"}
    assert steps[0].beside is not None and steps[0].beside.body["model"].startswith(
        "claude-haiku")
    assert next(s for s in steps if s.name == "idle").idle == 7.0
    # one session: each main turn resends the one before it and adds to it, whatever the
    # model (Claude Code's /model sends the whole history to the other model)
    sessions = {s.req.headers["X-Claude-Code-Session-Id"] for s in main if s.req}
    assert len(sessions) == 1
    for before, after in pairwise(main):
        assert before.req is not None and after.req is not None
        old, new = before.req.body["messages"], after.req.body["messages"]
        assert len(new) == len(old) + 2
        assert [m["role"] for m in new[:len(old)]] == [m["role"] for m in old]
    side = [s for s in steps if s.name.startswith("S2")]
    assert all(s.model == MODEL_A and not s.main for s in side)
    assert side[0].req.headers["X-Claude-Code-Session-Id"] not in sessions


def test_a_day_too_short_to_hold_its_events_is_refused() -> None:
    with pytest.raises(ValueError):
        build_day(on_a=3)


def test_a_perfect_cache_prefills_only_what_no_earlier_prompt_on_that_model_started_with(
        ) -> None:
    prompts = [("a", [1, 2, 3]), ("a", [1, 2, 3, 4, 5]), ("b", [1, 2, 3, 4, 5, 6]),
               ("a", [1, 2, 3, 4, 5]), ("a", [1, 9])]
    # the second on "a" shares 3; "b" has seen nothing; a repeat still evaluates one token
    assert new_tokens(prompts) == [3, 2, 6, 1, 1]


def turns() -> list[Turn]:
    return [Turn("A1", MODEL_A, True, "", 4.0, 1), Turn("title", "claude-haiku", False, "",
                                                       0.5, 1),
            Turn("B2", MODEL_B, True, "switch", 9.0, 3, ["prompt too long", "again"]),
            Turn("B3", MODEL_B, True, "", None, 2, ["x", "y"]),
            Turn("A4", MODEL_A, True, "back", 12.0, 1), Turn("A5", MODEL_A, True, "", 1.0, 1)]


def engine(prefilled: int = 300, peak: int = 17_000_000_000) -> Engine:
    return Engine([{"model": MODEL_B, "context": 4096, "how": "jit", "at": 1.0}],
                  prefilled, 20, 100, peak, 2)


def test_the_summary_counts_failed_sends_and_names_the_turns_after_a_switch() -> None:
    got = summarize("jit", turns(), engine(peak=34_000_000_000), 30.0, 20_000_000_000)
    assert got["failed_attempts"] == 2 + 2  # B2's two failed sends, B3's two (it gave up)
    assert got["gave_up"] == ["B3"]
    assert got["switch_ttft_s"] == 9.0 and got["back_ttft_s"] == 12.0
    assert got["after_back_ttft_s"] == 1.0
    assert got["main_ttft_p50_s"] == 6.5  # main turns that answered: 4, 9, 12, 1
    assert got["main_ttft_p99_s"] == 12.0 and got["main_ttft_sum_s"] == 26.0
    assert got["prefilled_over_new"] == 3.0 and got["over_budget"]
    assert not summarize("lmsd", turns(), engine(), 30.0, 20_000_000_000)["over_budget"]


def test_the_table_and_ratios_compare_each_mode_with_lmsd() -> None:
    a = summarize("lmsd", turns(), engine(prefilled=200), 20.0, 20_000_000_000)
    b = summarize("jit", turns(), engine(prefilled=300, peak=34_000_000_000), 30.0,
                  20_000_000_000)
    text = table([a, b], {"lmsd": "LMSD", "jit": "JIT"})
    assert text.splitlines()[0] == "| | LMSD | JIT |"
    assert "| peak memory loaded (budget) | 17 GB (20 GB) | 34 GB OVER (20 GB) |" in text
    assert "gave up: B3" in text
    (line,) = ratios([a, b])
    assert line.startswith("jit / lmsd: prefilled 1.50x") and "wall 1.50x" in line


def test_each_turn_takes_the_engine_prefills_logged_while_it_was_open() -> None:
    title = Turn("title", "claude-haiku", False, "", 1.0, 1, start=100.0, end=102.0)
    a1 = Turn("A1", "tiny-a", True, "", 5.0, 1, start=100.08, end=110.0)
    a2 = Turn("A2", "tiny-a", True, "back", 1.0, 1, start=120.0, end=121.0)
    evals = [(102.01, "tiny-a", 968), (110.3, "tiny-a", 17000),  # logged just after the end
             (115.0, "tiny-a", 500),  # between turns: lmsd's own (a warm-up)
             (121.5, "tiny-a", 1074)]
    assert attribute([title, a1, a2], evals) == 500
    assert (title.prefilled, a1.prefilled, a2.prefilled) == (968, 17000, 1074)
    got = summarize("lmsd-save", [title, a1, a2], Engine(
        [], 19542, 0, 19000, 0, 0, evals, {"cache.restored": 1}), 30.0, 0)
    assert got["prefilled_warmups"] == 500 and got["back_prefilled"] == 1074
    assert got["after_back_prefilled"] is None  # no main turn after it
    text = turns_table([got], {})
    assert "| A2 (back) | 1.00 s, 1074 prefilled |" in text
    assert "| prefilled: turn back / the next | 1074 / None |" in table([got], {})
    assert "| engine starts, stops; slot saves, restores | 0, 0; 0, 1 |" in table([got], {})


def test_lmsds_log_gives_the_engines_prefills_and_the_counted_events() -> None:
    lines = [
        json.dumps({"ts": 1.0, "event": "engine.started", "model": "tiny-a"}),
        json.dumps({"ts": 1.1, "event": "model.load", "model": "tiny-a", "seconds": 0.3}),
        json.dumps({"ts": 1.2, "event": "model.loaded", "model": "tiny-a",
                    "context_length": 32768}),
        "not json", "[1, 2]",
        json.dumps({"ts": 5.5, "event": "engine.output", "model": "tiny-a", "line": (
            "slot print_timing: id  0 | task 1 | prompt eval time =   35639.03 ms / 17297 "
            "tokens (    2.06 ms per token,   485.34 tokens per second)")}),
        json.dumps({"ts": 5.6, "event": "engine.output", "model": "tiny-a",
                    "line": "       eval time =     0.5 ms /  16 tokens"}),
        json.dumps({"ts": 6.0, "event": "request.end", "model": "tiny-a"}),
        json.dumps({"ts": 7.0, "event": "engine.started", "model": "tiny-b"}),
        json.dumps({"ts": 7.1, "event": "model.unload", "model": "tiny-a"}),
        json.dumps({"ts": 7.2, "event": "model.load", "model": "tiny-b"}),
    ]
    evals, events = read_log(lines)
    assert evals == [(5.5, "tiny-a", 17297)]  # the generation's own "eval time" is not one
    assert [e["event"] for e in events] == ["engine.started", "model.load", "model.loaded",
                                            "engine.started", "model.unload", "model.load"]
    assert peak_engines(events) == 2  # B started before A's unload was logged
    assert peak_engines([e for e in events if e["model"] == "tiny-a"]) == 1
    assert _context(events, "tiny-a") == 32768 and _context(events, "tiny-b") is None


def test_the_llama_server_config_saves_slots_only_when_asked() -> None:
    saving = commands("/bin/llama-server", "/m.gguf", 65536, Path("/slots"))
    plain = commands("/bin/llama-server", "/m.gguf", 65536, None)
    assert [c[c.index("--alias") + 1] for c in saving] == [NAME_A, NAME_B]
    assert all(c[c.index("--slot-save-path") + 1] == "/slots" for c in saving)
    assert all("--slot-save-path" not in c and "${PORT}" in c for c in plain)
    parsed = tomllib.loads(config_toml({"memory_budget": 100, "log_level": "debug"}, plain))
    assert parsed["memory_budget"] == 100
    assert [(m["name"], m["command"][2]) for m in parsed["models"]] == [
        (NAME_A, "/m.gguf"), (NAME_B, "/m.gguf")]


def test_the_turns_table_matches_requests_by_name_whatever_order_they_ended_in() -> None:
    first = summarize("lmsd-save", [Turn("A1", "a", True, "", 5.0, 1),
                                    Turn("title", "h", False, "", 9.0, 2)], engine(), 1.0, 0)
    second = summarize("both", [Turn("title", "h", False, "", 0.5, 1),
                                Turn("A1", "a", True, "", 4.0, 1)], engine(), 1.0, 0)
    lines = turns_table([first, second], {}).splitlines()
    assert lines[2:] == ["| A1 | 5.00 s | 4.00 s |", "| title | 9.00 s (2 sends) | 0.50 s |"]
