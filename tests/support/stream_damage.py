"""Claude Code 2.1.337's stream damage check, ported from its bundled SSE reader.

The CLI reads a streamed answer with ``fromSSEResponse`` (over the line reader ``ju``).
Unless ``CLAUDE_CODE_DISABLE_STREAM_DAMAGE_CHECK=1``, once a ``message_*`` or
``content_block_*`` event has arrived and while a content block is open, every event goes
through ``Cm``; a reason it returns ends the turn with "Reply damaged in transit. Try
again." (a ``DamagedStreamError``), so a tool never runs on incomplete input. This port
answers, for the raw bytes lmsd sent, what the CLI would say: the first fatal reason, and
the non-fatal odd frames it only logs. Names in comments are the minified ones in the
2.1.337 binary, so the port can be checked against it line by line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

#: ``yr``: the events the check is about.
SIX = frozenset({"message_start", "message_delta", "message_stop", "content_block_start",
                 "content_block_delta", "content_block_stop"})
#: The events ``fromSSEResponse`` parses as JSON and yields (the Anthropic ones; the
#: reader's agent/session names are left out: no Messages stream carries them).
PARSED = SIX | {"message", "completion"}
DAMAGED_MESSAGE = "Reply damaged in transit. Try again. (--debug for details)"
FATAL = ("damaged_line", "quoted_name", "nameless_event", "name_one_letter_off",
         "joined_ping")
_DAMAGED = re.compile("[\0\ufffd]")  # ``Tm``
_JOINED = re.compile('"type"|\0')
_NOT_JSON = object()


@dataclass(frozen=True)
class RawEvent:
    """One event as ``ju`` yields it: its name (None without an ``event`` line), its data,
    and every non-blank line since the previous event (``raw``)."""

    event: str | None
    data: str
    raw: tuple[str, ...]


@dataclass
class Verdict:
    """What the CLI makes of a stream."""

    fatal: str | None = None  # a DamagedStreamError's reason: the turn fails
    odd: list[str] = field(default_factory=list)  # logged only ("other_type", ...)
    error_event: bool = False  # the stream ended with an ``error`` event (an API error)
    unparsable: str | None = None  # data of a parsed event that is no JSON (a SyntaxError)
    events: list[RawEvent] = field(default_factory=list)  # what the reader saw, in order

    @property
    def damaged(self) -> bool:
        return self.fatal is not None


def read_events(body: bytes | str) -> list[RawEvent]:
    """``ju``: lines split on CR, LF or CRLF after a lenient UTF-8 decode (bad bytes become
    U+FFFD), a BOM dropped per line, an event per blank line; lines of other fields and
    comments stay in ``raw``; a last event without its blank line is never yielded."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    events: list[RawEvent] = []
    name: str | None = None
    data: list[str] = []
    raw: list[str] = []
    for line in re.split(r"\r\n|\r|\n", text):
        if line[:1] == "\ufeff":
            line = line[1:]
        if not line:
            if name is None and not data:
                continue  # raw lines (comments, other fields) carry over to the next one
            events.append(RawEvent(name, "\n".join(data), tuple(raw)))
            name, data, raw = None, [], []
            continue
        raw.append(line)
        colon = line.find(":")
        if colon == 0:
            continue
        key = line if colon == -1 else line[:colon]
        if key not in ("event", "data"):
            continue
        value = "" if colon == -1 else line[colon + (2 if line[colon + 1:colon + 2] == " "
                                                     else 1):]
        if key == "event":
            name = value
        else:
            data.append(value)
    return events


def _json(data: str) -> Any:
    """``qn``: JSON.parse, or a marker when it throws (JS has no NaN or Infinity)."""
    def no_constants(word: str) -> Any:
        raise ValueError(word)
    try:
        return json.loads(data, parse_constant=no_constants)
    except ValueError:
        return _NOT_JSON


def _type(parsed: Any) -> str | None:
    value = parsed.get("type") if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else None


def one_letter_off(name: str, kind: str) -> bool:
    """``Pm``: after their common prefix, the rests are equal once one character is dropped
    from either or both."""
    i = 0
    while i < len(name) and i < len(kind) and name[i] == kind[i]:
        i += 1
    a, b = name[i:], kind[i:]
    return a[1:] == b[1:] or a[1:] == b or a == b[1:]


def check_event(ev: RawEvent, block_start: bool) -> str | None:
    """``Cm``: the reason one event is damaged, or None."""
    lines = ev.raw
    if block_start:  # only from its last ``event:`` line on (``slice(-1)`` when none)
        last = max((i for i, line in enumerate(lines) if line.startswith("event:")),
                   default=-1)
        lines = lines[last:]
    for line in lines:
        colon = line.find(":")
        key = line if colon == -1 else line[:colon]
        if colon != 0 and key != "data" and _DAMAGED.search(line if key == "event" else key):
            return "damaged_line"
    name = ev.event or ""
    if '"' in name:
        return "quoted_name"
    if name in SIX or name == "ping":
        return None
    kind = _type(_json(ev.data))
    if kind not in SIX:
        return None
    if not name:
        return "nameless_event"
    return "name_one_letter_off" if one_letter_off(name, kind) else None


def check_stream(body: bytes | str, *, enabled: bool = True) -> Verdict:
    """``fromSSEResponse``'s checks over a whole body, stopping where the CLI would."""
    verdict = Verdict()
    armed = False  # ``q``: a message_*/content_block_* event has arrived
    block_open = False  # ``D``: from content_block_start to content_block_stop

    def odd(reason: str) -> None:
        if reason not in verdict.odd:
            verdict.odd.append(reason)

    for ev in read_events(body):
        verdict.events.append(ev)
        block_start = not block_open and ev.event == "content_block_start"
        block_open = block_open or block_start
        if armed and block_open and (reason := check_event(ev, block_start)):
            verdict.fatal = reason
            return verdict
        if ev.event in PARSED:
            parsed = _json(ev.data)
            if parsed is _NOT_JSON:
                verdict.unparsable = ev.data
                return verdict
            if armed and ev.event in SIX and _type(parsed) != ev.event:
                odd("empty_object" if ev.data == "{}" else "other_type")
        if ev.event == "message_stop":
            enabled = armed = False  # off for the rest of this stream
        armed = armed or (enabled and ev.event in SIX)
        if ev.event == "content_block_stop":
            block_open = False
        if ev.event == "ping":
            parsed = _json(ev.data)
            if armed and block_open and (
                    _type(parsed) in SIX
                    or (parsed is _NOT_JSON and _JOINED.search(ev.data))):
                verdict.fatal = "joined_ping"
                return verdict
            continue
        if ev.event == "error":
            verdict.error_event = True
            return verdict
    return verdict


def pings_in_blocks(verdict: Verdict) -> int:
    """How many pings the reader saw while a content block was open."""
    open_, count = False, 0
    for ev in verdict.events:
        open_ = (open_ or ev.event == "content_block_start") and ev.event != "content_block_stop"
        count += open_ and ev.event == "ping"
    return count


def assert_undamaged(body: bytes | str) -> Verdict:
    """Assert Claude Code 2.1.337 would read ``body`` without a damage error or odd frame;
    the verdict, for more checks."""
    verdict = check_stream(body)
    assert verdict.events, f"no SSE event in {body!r:.300}"
    assert verdict.fatal is None, f"damaged ({verdict.fatal}) at event " \
        f"{len(verdict.events)}: {verdict.events[-1]}"
    assert verdict.unparsable is None, f"data the CLI cannot parse: {verdict.unparsable!r}"
    assert not verdict.odd, f"odd frames: {verdict.odd}"
    return verdict
