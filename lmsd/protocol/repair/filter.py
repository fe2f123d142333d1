"""The streaming filter: tool calls printed as answer text become real tool calls.

It sits on every token, so text that cannot start a marker goes out at once; only from a
possible marker start is text held, until a parser confirms or refutes it, and never more
than :data:`LIMIT` characters past that start. Every decision depends on the text alone,
never on where the upstream cut it, so any chunking gives the same client-visible result.
Fenced code and inline ``<think>`` stay text, as do reasoning events (they pass as is).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

from ..pivot import (
    Event,
    Finished,
    FunctionTool,
    TextDelta,
    TextDone,
    ToolArgumentsDelta,
    ToolCallDone,
    ToolCallStarted,
    dumps,
)
from . import bare_json, glm, harmony, hermes_json, invoke_xml, lfm_pythonic, qwen_xml, tool_request
from .base import PENDING, Call, Match, Result, Tools

#: How far past a marker start text may be held before it is released as text.
LIMIT = 65536

Parser = Callable[[str, bool, Tools], Result]
#: Formats in the order they are tried at a shared opener (they refute one another at
#: once: ``<tool_call>`` then ``<function=``, ``{`` or a name).
_FORMATS = (qwen_xml, hermes_json, glm, harmony, lfm_pythonic, tool_request, invoke_xml)
#: Regions where nothing is repaired: an opener and its closer.
#: Inline code ends at its backtick or at the line's end (an unpaired backtick must not
#: turn repair off for the rest of the reply).
_REGIONS = {"```": ("```",), "`": ("`", "\n"), "<think>": ("</think>",)}
_REGION_PREFIXES = {o: frozenset(c[:m] for c in cs for m in range(1, len(c)))
                    for o, cs in _REGIONS.items()}
_FIRST = re.compile(r"[<\[`]")


class _Part:
    """One text part being scanned (by its key)."""

    __slots__ = ("at_start", "held", "raw", "region", "sent")

    def __init__(self) -> None:
        self.held = ""
        self.region: str | None = None  # the opener of the region the text is in
        self.at_start = True  # only blanks so far: a bare JSON reply may come
        self.raw: list[str] = []
        self.sent: list[str] = []


class ToolCallRepair:
    """Pivot events in, pivot events out, with printed tool calls made real."""

    def __init__(self, tools: tuple[FunctionTool, ...], *,
                 call_id_prefix: str = "call_lmsd_") -> None:
        self.tools: Tools = {t.name: t for t in tools}
        self.call_id_prefix = call_id_prefix
        self.repairs: list[str] = []
        self._parts: dict[str, _Part] = {}
        self._done_texts: dict[str, str | None] = {}  # key -> text sent (None: no part)
        self._parsers: dict[str, list[tuple[str, Parser]]] = {}
        for fmt in _FORMATS:
            for opener in fmt.OPENERS:
                self._parsers.setdefault(opener, []).append((fmt.NAME, fmt.parse))
        openers = sorted([*self._parsers, *_REGIONS], key=len, reverse=True)
        self._opener = re.compile("|".join(map(re.escape, openers)))
        self._prefixes = frozenset(o[:n] for o in openers for n in range(1, len(o)))
        self._longest = max(map(len, openers))

    # -- the interface ------------------------------------------------------------------

    def feed(self, event: Event) -> list[Event]:
        if not self.tools:
            return [event]
        if isinstance(event, TextDelta):
            return self._delta(event)
        if isinstance(event, TextDone):
            return self._done(event)
        out = self._flush(whole=isinstance(event, Finished))
        if isinstance(event, Finished) and self.repairs and event.stop != "end":
            event = replace(event, stop="end")
        out.append(event)
        return out

    def finish(self) -> list[Event]:
        """The stream ended without Finished or Failed: what is held goes out as text."""
        out: list[Event] = []
        for key, part in self._parts.items():
            if part.held:
                out.append(self._text(key, part, part.held))
                part.held = ""
        return out

    # -- text ---------------------------------------------------------------------------

    def _delta(self, event: TextDelta) -> list[Event]:
        part = self._parts.get(event.key)
        if part is None:
            part = self._parts[event.key] = _Part()
        part.raw.append(event.text)
        if not part.held and not part.at_start and (
                _FIRST.search(event.text) is None if part.region is None
                else not any(c[0] in event.text for c in _REGIONS[part.region])):
            part.sent.append(event.text)  # the fast path: nothing here can start a marker
            return [event] if event.text else []
        return self._scan(event.key, part, part.held + event.text, final=False, whole=False)

    def _done(self, event: TextDone) -> list[Event]:
        if event.key in self._done_texts and event.key not in self._parts:
            # restated again (the Responses decoder ends a part at content_part.done and
            # at output_item.done): the text as decided the first time, never rescanned
            done = self._done_texts[event.key]
            if done is None:
                return []
            return [event if event.text is None else TextDone(event.key, done)]
        part = self._parts.pop(event.key, None) or _Part()
        out: list[Event] = []
        text = part.held
        if event.text is not None:
            raw = "".join(part.raw)
            if len(event.text) > len(raw) and event.text.startswith(raw):
                text += event.text[len(raw):]  # restated with more than was streamed
        out += self._scan(event.key, part, text, final=True, whole=True)
        sent = "".join(part.sent)
        if not sent and (any(part.raw) or text) and self.repairs:
            # all of it became calls: no empty text part (Codex would echo an empty
            # assistant message back between the call and its output)
            self._done_texts[event.key] = None
            return out
        self._done_texts[event.key] = sent
        out.append(event if event.text is None else TextDone(event.key, sent))
        return out

    def _flush(self, *, whole: bool) -> list[Event]:
        """Before any other event: decide on all held text, so order is kept."""
        out: list[Event] = []
        for key, part in self._parts.items():
            if part.held:
                held, part.held = part.held, ""
                out += self._scan(key, part, held, final=True, whole=whole)
        return out

    def _scan(self, key: str, part: _Part, text: str, *, final: bool,
              whole: bool) -> list[Event]:
        out: list[Event] = []
        pieces: list[str] = []
        i, n = 0, len(text)
        if part.at_start:
            j = 0
            while j < n and text[j].isspace():
                j += 1
            if (j < n and text[j] == "{") or (j == n and not final):
                if not final and n < LIMIT:
                    part.held = text
                    return out
                call = bare_json.parse_whole(text, self.tools) if whole and n <= LIMIT else None
                if call is not None:
                    part.at_start, part.held = False, ""
                    self._call(out, bare_json.NAME, call)
                    return out
            part.at_start = False
        part.held = ""
        while i < n:
            if part.region is not None:
                ends = [(k, c) for c in _REGIONS[part.region] if (k := text.find(c, i)) >= 0]
                if ends:
                    k, closer = min(ends)
                    pieces.append(text[i:k + len(closer)])
                    i, part.region = k + len(closer), None
                    continue
                keep = 0 if final else _partial(text, max(i, n - 16),
                                                 _REGION_PREFIXES[part.region])
                pieces.append(text[i:n - keep])
                part.held = text[n - keep:]
                break
            m = self._opener.search(text, i)
            if m is None:
                keep = 0 if final else _partial(text, max(i, n - self._longest + 1),
                                                 self._prefixes)
                pieces.append(text[i:n - keep])
                part.held = text[n - keep:]
                break
            k, opener = m.start(), m.group()
            pieces.append(text[i:k])
            if not final and n - k < self._longest and text[k:] in self._prefixes:
                part.held = text[k:]  # "`" may yet be "```"
                break
            if opener in _REGIONS:
                pieces.append(opener)
                part.region, i = opener, m.end()
                continue
            window = text[k:k + LIMIT]
            got, name = self._parse(opener, window, final or n - k >= LIMIT)
            if got is PENDING:
                part.held = text[k:]
                break
            if not isinstance(got, Match):
                pieces.append(text[k])
                i = k + 1
                continue
            self._text_out(out, key, part, pieces)
            for call in got.calls:
                self._call(out, name, call)
            i = k + got.end
        self._text_out(out, key, part, pieces)
        return out

    def _parse(self, opener: str, window: str, final: bool) -> tuple[Result, str]:
        for name, parse in self._parsers[opener]:
            got = parse(window, final, self.tools)
            if got is PENDING and final:
                got = None
            if got is not None:
                return got, name
        return None, ""

    # -- what goes out ------------------------------------------------------------------

    def _text_out(self, out: list[Event], key: str, part: _Part, pieces: list[str]) -> None:
        text = "".join(pieces)
        pieces.clear()
        if text:
            out.append(self._text(key, part, text))

    def _text(self, key: str, part: _Part, text: str) -> TextDelta:
        part.sent.append(text)
        return TextDelta(key, text)

    def _call(self, out: list[Event], fmt: str, call: Call) -> None:
        self.repairs.append(fmt)
        n = len(self.repairs)
        key = f"repair-{n}"
        out.append(ToolCallStarted(key, f"{self.call_id_prefix}{n}", call[0]))
        out.append(ToolArgumentsDelta(key, dumps(call[1])))
        out.append(ToolCallDone(key))


def _partial(text: str, start: int, prefixes: frozenset[str]) -> int:
    """Length of the longest tail of ``text`` (from ``start`` on) that may begin a marker."""
    for m in _FIRST.finditer(text, start):
        if text[m.start():] in prefixes:
            return len(text) - m.start()
    return 0
