"""The filter's place in the stream: order, restated text, stops, bounds."""

from __future__ import annotations

from lmsd.protocol.failures import Failure
from lmsd.protocol.pivot import (
    Event,
    Failed,
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    TextDone,
    ToolArgumentsDelta,
    ToolCallDone,
    ToolCallStarted,
    Usage,
)
from lmsd.protocol.repair import LIMIT, ToolCallRepair
from lmsd.protocol.repair.schema import coerce

from .corpus import CALLS, TOOLS, qwen


def feed_all(repair: ToolCallRepair, events: list[Event]) -> list[Event]:
    return [o for e in events for o in repair.feed(e)]


def test_plain_text_streams_at_once_and_untouched() -> None:
    repair = ToolCallRepair(TOOLS)
    assert repair.feed(TextDelta("t", "hello")) == [TextDelta("t", "hello")]
    event = TextDelta("t", " world")
    assert repair.feed(event)[0] is event  # past the start, plain text is not even copied


def test_held_only_from_a_possible_marker() -> None:
    repair = ToolCallRepair(TOOLS)
    assert repair.feed(TextDelta("t", "see a")) == [TextDelta("t", "see a")]
    assert repair.feed(TextDelta("t", " <func")) == [TextDelta("t", " ")]
    assert repair.feed(TextDelta("t", "tional>")) == [TextDelta("t", "<functional>")]


def test_held_text_goes_out_before_any_other_event() -> None:
    repair = ToolCallRepair(TOOLS)
    out = feed_all(repair, [TextDelta("t", "x <tool_"), ReasoningDelta("r", "hm")])
    assert out == [TextDelta("t", "x "), TextDelta("t", "<tool_"), ReasoningDelta("r", "hm")]


def test_a_call_gets_its_own_key_and_the_stop_becomes_end() -> None:
    repair = ToolCallRepair(TOOLS, call_id_prefix="call_x_")
    usage = Usage(1, 0, 2)
    out = feed_all(repair, [Started("r1"), TextDelta("t", "Let me.\n" + qwen(*CALLS[0])),
                            TextDone("t"), Finished("length", usage, "r1")])
    assert out == [Started("r1"), TextDelta("t", "Let me.\n"),
                   ToolCallStarted("repair-1", "call_x_1", "Bash"),
                   ToolArgumentsDelta("repair-1", '{"command":"ls -la"}'),
                   ToolCallDone("repair-1"), TextDone("t"), Finished("end", usage, "r1")]
    assert repair.repairs == ["qwen_xml"]


def test_the_stop_is_kept_without_a_repair() -> None:
    repair = ToolCallRepair(TOOLS)
    assert feed_all(repair, [TextDelta("t", "hi"), Finished("length")])[-1] == Finished("length")


def test_restated_text_is_what_was_sent() -> None:
    repair = ToolCallRepair(TOOLS)
    text = "a" + qwen(*CALLS[0]) + "b"
    out = feed_all(repair, [TextDelta("t", text), TextDone("t", text)])
    assert out[-1] == TextDone("t", "ab")


def test_text_only_restated_is_scanned() -> None:
    repair = ToolCallRepair(TOOLS)
    out = feed_all(repair, [TextDone("t", "a" + qwen(*CALLS[0]))])
    assert [type(e) for e in out] == [TextDelta, ToolCallStarted, ToolArgumentsDelta,
                                      ToolCallDone, TextDone]
    assert out[-1] == TextDone("t", "a")


def test_finish_flushes_held_text_as_text() -> None:
    repair = ToolCallRepair(TOOLS)
    held = "x <function=Bash><parameter=command>ls</parameter></function>"
    out = repair.feed(TextDelta("t", held))
    assert out == [TextDelta("t", "x ")]
    assert repair.finish() == [TextDelta("t", held[2:])]
    assert repair.finish() == []


def test_failed_passes_after_held_text() -> None:
    repair = ToolCallRepair(TOOLS)
    failed = Failed(Failure("boom"))
    out = feed_all(repair, [TextDelta("t", "<|channel|>"), failed])
    assert out == [TextDelta("t", "<|channel|>"), failed]


def test_hold_back_is_bounded() -> None:
    repair = ToolCallRepair(TOOLS)
    out = repair.feed(TextDelta("t", "<function=Bash><parameter=command>"))
    assert out == []
    out = repair.feed(TextDelta("t", "x" * LIMIT))
    assert "".join(e.text for e in out if isinstance(e, TextDelta)).startswith("<function=Bash>")
    assert repair.repairs == []


def test_no_tools_no_filter() -> None:
    repair = ToolCallRepair(())
    event = TextDelta("t", qwen(*CALLS[0]))
    assert repair.feed(event) == [event]


def test_keys_are_scanned_apart() -> None:
    repair = ToolCallRepair(TOOLS)
    out = feed_all(repair, [TextDelta("a", "<function=Bash><parameter=command>ls"),
                            TextDelta("b", "plain"), TextDelta("a", "</parameter></function>"),
                            TextDone("a"), TextDone("b")])
    assert TextDelta("b", "plain") in out


def test_coercion() -> None:
    assert coerce("5", {"type": "integer"}) == 5
    assert coerce(" 5 ", {"type": ["integer", "null"]}) == 5
    assert coerce("null", {"type": ["integer", "null"]}) is None
    assert coerce("2.5", {"type": "number"}) == 2.5
    assert coerce("nan", {"type": "number"}) == "nan"
    assert coerce("True", {"type": "boolean"}) is True
    assert coerce('{"a": 1}', {"type": "object"}) == {"a": 1}
    assert coerce("[1]", {"type": "object"}) == "[1]"
    assert coerce("five", {"type": "integer"}) == "five"
    assert coerce("5", {"type": "string"}) == "5"
    assert coerce("5", {}) == "5"
