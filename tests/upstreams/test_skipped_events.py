"""The Responses stream's events the decoder has no use for are known by their SSE name
and never parsed: ``response.in_progress`` repeats the whole response (tools and
instructions, tens of KB) before the first token."""

from __future__ import annotations

import json
import logging

from lmsd.protocol.pivot import Started, TextDelta
from lmsd.protocol.responses.decode import ResponsesDecoder, skippable
from lmsd.upstreams.dialect import _read_event, _responses_events


class Raw:
    """An upstream response as the dialect reads it: raw chunks."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def aiter_raw(self):
        for chunk in self.chunks:
            yield chunk


def sse(name: str, data: str) -> bytes:
    return f"event: {name}\ndata: {data}\n\n".encode()


async def test_an_unused_event_is_counted_unparsed_and_a_used_one_decoded(caplog):
    created = {"type": "response.created", "response": {"id": "resp_1"}}
    delta = {"type": "response.output_text.delta", "item_id": "m1", "output_index": 0,
             "content_index": 0, "delta": "hi"}
    decoder = ResponsesDecoder("msg_1")
    raw = Raw(sse("response.created", json.dumps(created)),
              # not JSON: parsing it would log upstream.bad_event
              sse("response.in_progress", "{not json, and never read"),
              sse("response.output_text.delta", json.dumps(delta)))
    with caplog.at_level(logging.DEBUG):
        events = [e async for batch in _responses_events(raw, decoder) for e in batch]
    assert isinstance(events[0], Started) and events[0].response_id == "resp_1"
    assert any(isinstance(e, TextDelta) and e.text == "hi" for e in events)
    assert decoder.ignored == {"response.in_progress": 1}
    assert "upstream.bad_event" not in caplog.text


def test_only_named_response_events_without_a_handler_are_skipped():
    assert skippable("response.in_progress") and skippable("response.content_part.added")
    for name in (None, "response.created", "response.output_text.delta", "error",
                 "response.completed", "message"):
        assert not skippable(name)


def test_a_created_event_is_read_to_its_id_and_an_unusual_one_parsed_whole():
    tools = [{"type": "function", "name": "Bash", "parameters": {"type": "object"}}]
    usual = json.dumps({"type": "response.created", "sequence_number": 0,
                        "response": {"id": "resp_9f", "tools": tools, "status": "x"}})
    assert _read_event("response.created", usual) == {
        "type": "response.created", "response": {"id": "resp_9f"}}
    compact = json.dumps({"type": "response.created", "response": {"id": "resp_1"}},
                         separators=(",", ":"))
    assert _read_event("response.created", compact)["response"] == {"id": "resp_1"}
    # keys in another order, or an id with an escape: the whole event, as before
    other = json.dumps({"response": {"id": "resp_2", "tools": tools},
                        "type": "response.created"})
    assert _read_event("response.created", other)["response"]["tools"] == tools
    escaped = json.dumps({"type": "response.created", "response": {"id": "r\u00e9\"x"}})
    assert _read_event("response.created", escaped)["response"]["id"] == "r\u00e9\"x"
