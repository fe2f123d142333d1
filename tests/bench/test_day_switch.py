"""bench/day_switch.py's pure parts: the day it sends (bench/day_switch_trace.py) and the
figures it makes of a run (bench/day_switch_report.py), without a box or an engine."""

from __future__ import annotations

from itertools import pairwise

import pytest

from bench.day_switch_report import Engine, Turn, new_tokens, ratios, summarize, table
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
