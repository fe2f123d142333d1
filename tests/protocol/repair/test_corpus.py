"""The corpus: every positive repaired with the exact calls, every negative byte-identical."""

from __future__ import annotations

import json

import pytest

from lmsd.protocol.pivot import (
    Event,
    Finished,
    ReasoningDelta,
    ReasoningDone,
    TextDelta,
    TextDone,
    ToolArgumentsDelta,
    ToolCallDone,
    ToolCallStarted,
)
from lmsd.protocol.repair import ToolCallRepair

from .corpus import NEGATIVES, POSITIVES, REASONING, TOOLS


def run(text: str, pieces: list[int] | None = None) -> tuple[ToolCallRepair, list[Event]]:
    """Stream ``text`` in pieces of the given sizes (default: one character each)."""
    repair = ToolCallRepair(TOOLS)
    out: list[Event] = [*repair.feed(ReasoningDelta("r", "thinking")),
                        *repair.feed(ReasoningDone("r"))]
    i, sizes = 0, iter(pieces or [])
    while i < len(text):
        step = next(sizes, 1)
        out += repair.feed(TextDelta("t", text[i:i + step]))
        i += step
    out += repair.feed(TextDone("t"))
    out += repair.feed(Finished("end"))
    return repair, out


def visible(events: list[Event]) -> list[object]:
    """What a client sees: runs of text merged, calls as (name, arguments)."""
    seen: list[object] = []
    for e in events:
        if isinstance(e, TextDelta):
            if seen and isinstance(seen[-1], str):
                seen[-1] += e.text
            else:
                seen.append(e.text)
        elif isinstance(e, ToolArgumentsDelta):
            seen.append(("args", json.loads(e.delta)))
        elif isinstance(e, ToolCallStarted):
            seen.append(("call", e.name, e.call_id, e.key))
        elif not isinstance(e, ToolCallDone):
            seen.append(e)
    return seen


def text_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def calls_of(events: list[Event]) -> list[tuple[str, object]]:
    names = [e.name for e in events if isinstance(e, ToolCallStarted)]
    args = [json.loads(e.delta) for e in events if isinstance(e, ToolArgumentsDelta)]
    return list(zip(names, args, strict=True))


def test_corpus_size() -> None:
    formats = {fmt for _, _, calls, _ in POSITIVES for fmt, _, _ in calls}
    assert len(formats) == 8
    assert len(POSITIVES) >= 60
    assert len(NEGATIVES) + len(REASONING) >= 30


@pytest.mark.parametrize(("name", "text", "calls", "prose"), POSITIVES,
                         ids=[p[0] for p in POSITIVES])
def test_positive(name: str, text: str, calls: list[tuple[str, str, dict]], prose: str) -> None:
    for pieces in (None, [len(text)], [3] * len(text), [7, 1, 13] * len(text)):
        repair, out = run(text, pieces)
        assert repair.repairs == [fmt for fmt, _, _ in calls]
        assert calls_of(out) == [(n, a) for _, n, a in calls]
        assert text_of(out) == prose
        assert out[-1] == Finished("end")
        started = [e for e in out if isinstance(e, ToolCallStarted)]
        assert [e.call_id for e in started] == [f"call_lmsd_{i + 1}" for i in range(len(calls))]
        assert [e.key for e in started] == [f"repair-{i + 1}" for i in range(len(calls))]
        assert all(e.key == "t" for e in out if isinstance(e, TextDelta | TextDone))


@pytest.mark.parametrize(("name", "text"), NEGATIVES, ids=[n[0] for n in NEGATIVES])
def test_negative(name: str, text: str) -> None:
    for pieces in (None, [len(text)], [5] * len(text)):
        repair, out = run(text, pieces)
        assert repair.repairs == []
        assert text_of(out) == text
        assert not any(isinstance(e, ToolCallStarted) for e in out)


@pytest.mark.parametrize("markup", REASONING)
def test_reasoning_passes_untouched(markup: str) -> None:
    repair = ToolCallRepair(TOOLS)
    events: list[Event] = [ReasoningDelta("r", c) for c in markup]
    events += [ReasoningDone("r", markup), TextDelta("t", "ok"), TextDone("t"), Finished("end")]
    out = [o for e in events for o in repair.feed(e)]
    assert out == events
    assert repair.repairs == []
