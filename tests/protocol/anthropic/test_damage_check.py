"""The port of Claude Code 2.1.337's stream damage check (tests/support/stream_damage.py):
each damaged shape its ``Cm`` names is caught, the shapes it lets through are let through,
and a well-formed stream as lmsd encodes it is clean. (The real CLI agrees on one damaged
and one clean stream: tests/e2e/test_stream_damage_cli.py.)"""

from __future__ import annotations

import json

import pytest

from lmsd.protocol.sse import PING, encode, encode_all
from tests.support.stream_damage import (
    assert_undamaged,
    check_stream,
    one_letter_off,
    read_events,
)

START = {"type": "message_start", "message": {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
    "stop_reason": None, "stop_sequence": None,
    "usage": {"input_tokens": 10, "output_tokens": 0}}}
TOOL_START = {"type": "content_block_start", "index": 0, "content_block": {
    "type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}}
DELTA = {"type": "content_block_delta", "index": 0,
         "delta": {"type": "input_json_delta", "partial_json": '{"command": "ls"}'}}
STOP = {"type": "content_block_stop", "index": 0}
END = [{"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 5}}, {"type": "message_stop"}]


def frame(name: str | None, data: object) -> bytes:
    """An SSE frame with any name (None: no event line) over ``data``."""
    body = data if isinstance(data, str) else json.dumps(data)
    head = "" if name is None else f"event: {name}\n"
    return f"{head}data: {body}\n\n".encode()


def stream(*middle: bytes, before: bytes = b"") -> bytes:
    """message_start, a tool_use block around ``middle`` (after a first delta), the end."""
    return (encode(START) + PING + before + encode(TOOL_START) + encode(DELTA)
            + b"".join(middle) + encode(STOP) + encode_all(END))


def test_a_stream_as_lmsd_encodes_it_with_pings_in_the_block_is_clean():
    verdict = assert_undamaged(stream(PING, encode(DELTA), PING))
    assert [e.event for e in verdict.events].count("ping") == 3
    assert not verdict.error_event and verdict.fatal is None


@pytest.mark.parametrize("newline", ["\r\n", "\r"], ids=["crlf", "cr"])
def test_other_line_ends_read_the_same(newline):
    body = stream(PING).decode().replace("\n", newline)
    assert [e.event for e in read_events(body)] == [e.event for e in read_events(stream(PING))]
    assert_undamaged(body)


DAMAGED = {
    "nameless_event": frame(None, DELTA),
    "name_one_letter_off": frame("content_block_delt", DELTA),
    "name_one_letter_off/extra": frame("content_blockk_delta", DELTA),
    "name_one_letter_off/swapped": frame("content_block_dalta", DELTA),
    "quoted_name": frame('"content_block_delta"', DELTA),
    "damaged_line/nul_in_name": frame("content_block_delta\0", DELTA),
    "damaged_line/replacement_in_name": frame("content_block_\ufffdelta", DELTA),
    "damaged_line/bad_utf8_in_name": b"event: content_block_\xffelta\ndata: "
                                     + json.dumps(DELTA).encode() + b"\n\n",
    "damaged_line/field_name": b"d\xffta: " + json.dumps(DELTA).encode() + b"\n\n",
    "damaged_line/left_over_line": b"id\0: 7\n\n" + encode(DELTA),
    "joined_ping/typed": frame("ping", DELTA),
    "joined_ping/not_json": frame("ping", '{"type": "ping"}event: content_block_delta'),
    "joined_ping/nul": frame("ping", "{\0"),
}


@pytest.mark.parametrize("shape", DAMAGED.values(), ids=DAMAGED.keys())
def test_each_damaged_shape_inside_a_block_is_fatal(shape):
    expected = next(k for k, v in DAMAGED.items() if v is shape).split("/")[0]
    verdict = check_stream(stream(shape))
    assert verdict.fatal == expected
    assert verdict.events[-1].event != "message_stop"  # the CLI stops reading there


# (a left-over line joins the next event: outside a block, that is the block's start)
OUTSIDE = {k: v for k, v in DAMAGED.items() if k != "damaged_line/left_over_line"}


@pytest.mark.parametrize("shape", OUTSIDE.values(), ids=OUTSIDE.keys())
def test_outside_a_block_and_after_message_stop_the_check_is_off(shape):
    between = stream(before=shape)  # after message_start, before the block opens
    assert check_stream(between).fatal is None
    after = stream() + encode(START) + encode(TOOL_START) + shape  # after message_stop
    assert check_stream(after).fatal is None


def test_the_check_can_be_turned_off():
    assert check_stream(stream(frame(None, DELTA)), enabled=False).fatal is None


def test_a_block_start_is_checked_only_from_its_last_event_line():
    """Lines left over before a content_block_start do not count; before a delta they do."""
    left_over = b"id\0: 7\n\n"
    clean = encode(START) + left_over + encode(TOOL_START) + encode(STOP) + encode_all(END)
    assert check_stream(clean).fatal is None
    assert check_stream(stream(left_over + encode(DELTA))).fatal == "damaged_line"


@pytest.mark.parametrize("shape", [
    frame("content_block_delta", {"type": "content_block_delta", "index": 0,
                                  "delta": {"type": "input_json_delta",
                                            "partial_json": "\0\ufffd"}}),
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
    b'{"type":"input_json_delta","partial_json":"\xe2\x82\xac\xef\xbf\xbd"}}\n\n',
    b": comment \0 \xff\n\n",
    frame("ping", {"type": "ping"}),
    frame("ping", "not json"),
    frame("error", {"type": "error", "error": {"type": "api_error", "message": "x"}}),
    frame("unrelated", DELTA),  # two letters off: the CLI ignores it, silently
], ids=["nul_in_data", "replacement_in_data", "comment", "ping", "plain_ping", "error",
        "far_name"])
def test_what_the_check_lets_through(shape):
    verdict = check_stream(stream(shape))
    assert verdict.fatal is None


def test_an_error_event_ends_the_stream_as_an_api_error():
    error = frame("error", {"type": "error", "error": {"type": "api_error", "message": "x"}})
    verdict = check_stream(encode(START) + encode(TOOL_START) + error)
    assert verdict.error_event and verdict.fatal is None


@pytest.mark.parametrize(("data", "odd"), [
    ("{}", "empty_object"), (json.dumps({**DELTA, "type": "content_block_stop"}), "other_type")])
def test_a_named_event_of_another_type_is_only_logged(data, odd):
    verdict = check_stream(stream(frame("content_block_delta", data)))
    assert verdict.fatal is None and verdict.odd == [odd]
    with pytest.raises(AssertionError, match="odd frames"):
        assert_undamaged(stream(frame("content_block_delta", data)))


def test_data_the_reader_cannot_parse_is_reported():
    verdict = check_stream(stream(frame("content_block_delta", "{not json")))
    assert verdict.unparsable == "{not json" and verdict.fatal is None


def test_an_event_cut_before_its_blank_line_is_never_read():
    body = encode(START) + b'event: content_block_start\ndata: {"type":"content_block_start"}'
    assert [e.event for e in read_events(body)] == ["message_start"]


@pytest.mark.parametrize(("name", "kind", "off"), [
    ("content_block_delt", "content_block_delta", True),
    ("content_block_deltaa", "content_block_delta", True),
    ("content_block_dalta", "content_block_delta", True),
    ("content_block_stop", "content_block_delta", False),
    ("message_stat", "message_start", True),
    ("ping", "message_stop", False),
])
def test_one_letter_off(name, kind, off):
    assert one_letter_off(name, kind) is off
