"""SplitRepair: text, call, text, each part ended in order, at any chunking."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from lmsd.protocol.pivot import (
    Finished,
    FunctionTool,
    TextDelta,
    TextDone,
    ToolCallDone,
    ToolCallStarted,
)
from lmsd.protocol.repair import ToolCallRepair
from lmsd.protocol.repair.split import SplitRepair

BASH = FunctionTool("Bash", "", {"type": "object", "properties": {"command": {
    "type": "string"}}, "required": ["command"]})
CALL = '<tool_call>{"name": "Bash", "arguments": {"command": "ls"}}</tool_call>'


def run(text: str, cuts: list[int]) -> list:
    repair = SplitRepair(ToolCallRepair((BASH,)))
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    out = []
    for a, b in pairwise(points):
        out += repair.feed(TextDelta("m", text[a:b]))
    out += repair.feed(TextDone("m", text)) + repair.feed(TextDone("m", text))
    return out + repair.feed(Finished("end")) + repair.finish()


@given(st.lists(st.integers(min_value=0, max_value=200), max_size=12))
def test_text_before_and_after_a_call_are_two_parts_in_order(cuts):
    out = run("Before.\n" + CALL + "\nAfter.", cuts)
    shape = [type(e).__name__ for e in out if not isinstance(e, TextDelta)]
    assert shape[:2] == ["TextDone", "ToolCallStarted"]
    assert shape[-1] == "Finished" and shape.count("ToolCallStarted") == 1
    first_done = next(e for e in out if isinstance(e, TextDone))
    assert first_done == TextDone("m", "Before.\n")
    after = [e for e in out if isinstance(e, TextDone) and e.key != "m"]
    assert after == [TextDone("m~1", "\nAfter.")] * 2  # restated: the same twice
    call_at = next(i for i, e in enumerate(out) if isinstance(e, ToolCallDone))
    assert all(e.key == "m~1" for e in out[call_at:] if isinstance(e, TextDelta))
    assert "".join(e.text for e in out if isinstance(e, TextDelta)) == "Before.\n\nAfter."


def test_a_text_without_a_call_passes_unchanged():
    text = "Just prose, a < sign and [brackets]."
    out = run(text, [3, 9, 17])
    assert [e for e in out if isinstance(e, TextDone)] == [TextDone("m", text)] * 2
    assert not [e for e in out if isinstance(e, ToolCallStarted)]
    assert all(e.key == "m" for e in out if isinstance(e, TextDelta))


def test_a_call_with_nothing_after_it_ends_no_second_part():
    out = run("Before.\n" + CALL, [5, 20])
    assert [e for e in out if isinstance(e, TextDone)] == [TextDone("m", "Before.\n")]
