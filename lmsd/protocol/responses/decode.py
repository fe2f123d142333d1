"""Responses stream events -> pivot events: the reading half of the old stream converter.

Upstreams that speak ``/v1/responses`` differ in what they send: LM Studio names every
item and part; llama.cpp interleaves several calls with no ``output_index``, no
``content_index`` and no ``function_call_arguments.done``; some servers put a whole text
or argument string only in a ``.done`` event or in ``output_item.done``. This decoder
reads them all into pivot events whose ``key`` names one part of the answer (an item id,
or a stand-in when the upstream gave none), and leaves ordering to the front's encoder.

Keys: an event names its item by ``item_id``, else by ``output_index`` (through the ids
``output_item.added`` announced), else it belongs to the most recent part of its kind.
Texts and reasonings are keyed per content part (``item/part``), tool calls per item.
What the engine prefilled: llama-server's ``timings`` beside the final response, else the
input less a positive cached count (``protocol/servers/prefill.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..failures import Failure, as_error, event_failure
from ..pivot import (
    OUTPUT,
    Event,
    Failed,
    Finished,
    ReasoningDelta,
    ReasoningDone,
    Started,
    TextDelta,
    TextDone,
    ToolArgumentsDelta,
    ToolCallDone,
    ToolCallStarted,
    Usage,
    unfinished,
)
from ..servers.prefill import read_timings

Upstream = dict[str, Any]
Out = list[Event]
TEXT, THINKING, TOOL = "text", "thinking", "tool_use"
NAMELESS_CALL = "the upstream sent a tool call without a tool name"


class ResponsesDecoder:
    """Read one upstream Responses stream, event by event."""

    def __init__(self, message_id: str, *, upstream_name: str = "LM Studio",
                 max_output_tokens: int | None = None) -> None:
        self.message_id = message_id  # for the ids of calls the upstream left without one
        self.upstream_name = upstream_name
        self.max_output_tokens = max_output_tokens  # what the request allowed, if it said
        self.ignored: dict[str, int] = {}  # event types with nothing to decode, by count
        self._aliases: dict[int, str] = {}  # output_index -> item id
        self._last_key: dict[str, str] = {}  # kind -> most recent key (for id-less events)
        self._parts: set[tuple[str, str]] = set()  # (kind, key) of every part seen
        self._keys: set[str] = set()  # the same keys, whatever their kind
        self._synthetic_ids = 0
        self.output = False  # any text, reasoning or tool call came
        self.ended = False  # the answer said how it ended (Finished or Failed)

    def feed(self, event: Upstream) -> Out:
        """Decode one upstream event (a parsed ``data:`` payload)."""
        out = self._decode(event)
        self.output = self.output or any(isinstance(e, OUTPUT) for e in out)
        self.ended = self.ended or any(isinstance(e, Finished | Failed) for e in out)
        return out

    def finish(self) -> Out:
        """End of the HTTP body. One that ended with nothing in it and never said how
        (no ``response.completed``) is a cut answer, named so; one with output but no end
        is left to the encoder ("closed the stream before the response was complete")."""
        if self.ended or self.output:
            return []
        self.ended = True
        return [unfinished(self.upstream_name)]

    def _decode(self, event: Upstream) -> Out:
        """Decode one upstream event (a parsed ``data:`` payload)."""
        kind = event.get("type")
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self.ignored[str(kind)] = self.ignored.get(str(kind), 0) + 1
            return []
        try:
            return handler(self, event)
        except (TypeError, AttributeError, KeyError, ValueError):
            # A malformed event (wrong field types): counted and reported in the request's
            # log, not guessed at. Nothing of it reaches the encoder.
            self.ignored[f"malformed {kind}"] = self.ignored.get(f"malformed {kind}", 0) + 1
            return []

    # -- keys ------------------------------------------------------------------------------

    def _key(self, event: Upstream, kind: str) -> str:
        item_id = event.get("item_id")
        if isinstance(item_id, str) and item_id:
            return item_id
        index = event.get("output_index")
        if isinstance(index, int):
            return self._aliases.get(index, f"#{index}")
        return self._last_key.get(kind, f"#{kind}")

    def _seen(self, kind: str, key: str) -> None:
        """A part the encoder now has a block for: the latest of its kind. (The encoder
        makes one for any text or reasoning event, and for a whole reasoning text.)"""
        if (kind, key) not in self._parts:
            self._parts.add((kind, key))
            self._keys.add(key)
            self._last_key[kind] = key

    def _text(self, key: str, delta: str) -> Out:
        if (TEXT, key) not in self._parts:
            self._seen(TEXT, key)
        return [TextDelta(key, delta)]

    def _text_done(self, key: str, text: Any) -> Out:
        self._seen(TEXT, key)
        return [TextDone(key, text if isinstance(text, str) else None)]

    def _thinking(self, key: str, delta: str) -> Out:
        if (THINKING, key) not in self._parts:
            self._seen(THINKING, key)
        return [ReasoningDelta(key, delta)]

    def _thinking_done(self, key: str, text: Any) -> Out:
        text = text if isinstance(text, str) else None
        if text:  # the encoder makes a block of a whole reasoning it had no delta of
            self._seen(THINKING, key)
        return [ReasoningDone(key, text)]

    # -- event handlers ---------------------------------------------------------------------

    def _on_created(self, event: Upstream) -> Out:
        response = event.get("response") or {}
        return [Started(_s(response.get("id")) or None)]

    def _on_item_added(self, event: Upstream) -> Out:
        item = event.get("item") or {}
        item_id = item.get("id")
        index = event.get("output_index")
        kind = item.get("type")
        key = item_id if isinstance(item_id, str) and item_id else None
        if key and isinstance(index, int):
            self._aliases[index] = key
        key = key or (f"#{index}" if isinstance(index, int) else f"#{kind}")
        if kind == "function_call":
            name = _s(item.get("name"))
            if not name:
                # A plain Failure renders as api_error 500, as this has always been reported.
                return [Failed(Failure(NAMELESS_CALL))]
            call_id = _s(item.get("call_id")) or _s(item_id)
            if not call_id:
                self._synthetic_ids += 1
                call_id = f"call_lmsd_{self.message_id[-12:]}_{self._synthetic_ids}"
            self._seen(TOOL, key)
            out: Out = [ToolCallStarted(key, call_id, name)]
            if arguments := _s(item.get("arguments")):
                out.append(ToolArgumentsDelta(key, arguments))
            return out
        if kind == "reasoning":
            self._last_key[THINKING] = key
        elif kind == "message":
            self._last_key[TEXT] = key
        return []

    def _on_item_done(self, event: Upstream) -> Out:
        item = event.get("item") or {}
        item_id = item.get("id")
        index = event.get("output_index")
        if isinstance(item_id, str) and item_id in self._keys:
            key = item_id
        elif isinstance(index, int):
            key = self._aliases.get(index, f"#{index}")
        else:
            key = f"{item_id or ''}"
        kind = item.get("type")
        out: Out = []
        if kind == "function_call":
            if (TOOL, key) not in self._parts:
                out += self._on_item_added(event)  # the call's only event
            if (TOOL, key) in self._parts:
                out.append(ToolCallDone(key, _s(item.get("arguments")) or None))
            return out
        if kind == "message":
            for i, part in enumerate(item.get("content") or ()):
                if part.get("type") in ("output_text", "refusal"):
                    out += self._text_done(_part_key(key, i),
                                           part.get("text", part.get("refusal")))
        elif kind == "reasoning":
            parts = item.get("content") or []
            for i, part in enumerate(parts):
                if part.get("type") == "reasoning_text":
                    out += self._thinking_done(_part_key(key, i), part.get("text"))
            if not parts:
                for i, part in enumerate(item.get("summary") or ()):
                    out += self._thinking_done(_part_key(key, f"s{i}"), part.get("text"))
        return out

    def _on_text_delta(self, event: Upstream) -> Out:  # the hot path: one per token
        key = f"{self._key(event, TEXT)}/{event.get('content_index', 0)}"
        return self._text(key, _s(event.get("delta")))

    def _on_text_done(self, event: Upstream) -> Out:
        key = _part_key(self._key(event, TEXT), event.get("content_index", 0))
        return self._text_done(key, _s(event.get("text")) or None)

    def _on_refusal_done(self, event: Upstream) -> Out:
        key = _part_key(self._key(event, TEXT), event.get("content_index", 0))
        return self._text_done(key, event.get("refusal"))

    def _on_args_delta(self, event: Upstream) -> Out:
        return [ToolArgumentsDelta(self._key(event, TOOL), _s(event.get("delta")))]

    def _on_args_done(self, event: Upstream) -> Out:
        return [ToolCallDone(self._key(event, TOOL), _s(event.get("arguments")) or None)]

    def _on_reasoning_delta(self, event: Upstream) -> Out:
        key = f"{self._key(event, THINKING)}/{event.get('content_index', 0)}"
        return self._thinking(key, _s(event.get("delta")))

    def _on_reasoning_done(self, event: Upstream) -> Out:
        key = _part_key(self._key(event, THINKING), event.get("content_index", 0))
        return self._thinking_done(key, _s(event.get("text")) or None)

    def _on_summary_delta(self, event: Upstream) -> Out:
        key = _part_key(self._key(event, THINKING), f"s{event.get('summary_index', 0)}")
        return self._thinking(key, _s(event.get("delta")))

    def _on_summary_done(self, event: Upstream) -> Out:
        key = _part_key(self._key(event, THINKING), f"s{event.get('summary_index', 0)}")
        return self._thinking_done(key, _s(event.get("text")) or None)

    def _on_completed(self, event: Upstream) -> Out:
        """A completed answer. llama-server has no ``incomplete`` (its response objects
        have no ``incomplete_details``) and says ``completed`` also when it stopped at
        ``max_output_tokens``, which its usage then shows. A server that has the field is
        taken at its word."""
        response = event.get("response") or {}
        usage = _usage(response, event.get("timings"))
        limit = self.max_output_tokens
        cut = "incomplete_details" not in response and usage is not None and \
            limit is not None and usage.output_tokens >= limit > 0
        return [Finished("length" if cut else "end", usage, _s(response.get("id")) or None)]

    def _on_incomplete(self, event: Upstream) -> Out:
        response = event.get("response") or {}
        usage = _usage(response, event.get("timings"))
        response_id = _s(response.get("id")) or None
        reason = (response.get("incomplete_details") or {}).get("reason")
        return [Finished("filter" if reason == "content_filter" else "length", usage,
                         response_id)]

    def _on_failure(self, event: Upstream) -> Out:
        """``error`` and ``response.failed``: an overflow in any wording is still an overflow."""
        return [Failed(as_error(event_failure(event), None, name=self.upstream_name))]


def _s(value: Any) -> str:
    """A string field from an upstream event; anything else counts as absent."""
    return value if isinstance(value, str) else ""


def _part_key(item_key: str, part: Any) -> str:
    return f"{item_key}/{part}"


def _usage(response: Upstream, timings: Any = None) -> Usage | None:
    """The response's usage. Prefilled: llama-server's ``timings.prompt_n``; else, when
    some of the prompt was cached, the rest of it (read as ``tokens.context_usage`` reads
    it); else unknown, since LM Studio's cached count may be stuck at 0 (lms#553)."""
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return None
    details = usage.get("input_tokens_details") or {}
    reported = int(usage.get("input_tokens") or 0)
    cached = int(details.get("cached_tokens") or 0)
    t = read_timings(timings)
    prefilled = t.prompt_n if t is not None else None
    if prefilled is None and cached > 0:
        prefilled = reported - cached if reported >= cached else reported
    return Usage(input_tokens=reported, cached_tokens=cached,
                 output_tokens=int(usage.get("output_tokens") or 0),
                 prefilled_tokens=prefilled, prefill_ms=t.prompt_ms if t else None)


_HANDLERS: dict[str, Callable[[ResponsesDecoder, Upstream], Out]] = {
    "response.created": ResponsesDecoder._on_created,
    "response.output_item.added": ResponsesDecoder._on_item_added,
    "response.output_item.done": ResponsesDecoder._on_item_done,
    "response.output_text.delta": ResponsesDecoder._on_text_delta,
    "response.output_text.done": ResponsesDecoder._on_text_done,
    "response.refusal.delta": ResponsesDecoder._on_text_delta,
    "response.refusal.done": ResponsesDecoder._on_refusal_done,
    "response.function_call_arguments.delta": ResponsesDecoder._on_args_delta,
    "response.function_call_arguments.done": ResponsesDecoder._on_args_done,
    "response.reasoning_text.delta": ResponsesDecoder._on_reasoning_delta,
    "response.reasoning_text.done": ResponsesDecoder._on_reasoning_done,
    "response.reasoning_summary_text.delta": ResponsesDecoder._on_summary_delta,
    "response.reasoning_summary_text.done": ResponsesDecoder._on_summary_done,
    "response.completed": ResponsesDecoder._on_completed,
    "response.incomplete": ResponsesDecoder._on_incomplete,
    "response.failed": ResponsesDecoder._on_failure,
    "error": ResponsesDecoder._on_failure,
}


def skippable(name: str | None) -> bool:
    """An SSE event the decoder has nothing to take from, known by its ``event:`` name:
    its data need not be parsed (``response.in_progress`` repeats the whole response,
    tools and instructions included, before the first token)."""
    return name is not None and name.startswith("response.") and name not in _HANDLERS
