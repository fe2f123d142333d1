"""Anthropic Messages stream events from an upstream engine -> pivot events.

For engines that speak ``/v1/messages`` themselves. They differ in what they send:

- llama-server keeps its text block open while its tool calls stream, closes every block
  only at the end, names the thinking block 0 and the text block 1 only once reasoning
  has appeared (so a block index can be reused by another kind), sends the usage in
  ``message_start`` (``input_tokens`` uncached, ``cache_read_input_tokens``) and only
  ``output_tokens`` in ``message_delta``, keeps the connection alive with SSE comments,
  sends no ``[DONE]``, and reports a failure mid-stream as ``event: error`` whose data is
  its own flat error object (``{"code", "message", "type": "server_error"}``);
- vLLM and Ollama follow Anthropic's grammar (one block at a time) and put the whole
  ``input_tokens`` in ``message_delta``; vLLM's errors are ``{"type": "error", "error":
  {...}}``.

A part is keyed by its kind and block index (``text_1``, ``tool_2``), so a reused index
stays two parts; the front's encoder orders them. Usage is read as Anthropic means it:
``input_tokens`` excludes the cache reads and writes, so the pivot's whole-context
``input_tokens`` is their sum. A server that reports its cache reads (llama-server always
does) says by the same token what it prefilled: the uncached rest (``protocol/servers/prefill.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..failures import Failure, as_error, classify, read_failure
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
    dumps,
    unfinished,
)
from ..servers.prefill import Timings, read_timings

Upstream = Mapping[str, Any]
Out = list[Event]
TEXT, THINKING, TOOL = "text", "thinking", "tool"
NAMELESS_CALL = "the upstream sent a tool call without a tool name"
Stop = Literal["end", "length", "filter"]
_STOPS: dict[str, Stop] = {"max_tokens": "length", "model_context_window_exceeded": "length",
                           "refusal": "filter"}  # end_turn, tool_use, stop_sequence: "end"
_USAGE = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
          "output_tokens")


@dataclass(slots=True)
class _Part:
    kind: str  # TEXT | THINKING | TOOL
    key: str
    streamed: bool = False  # a tool call: argument fragments came
    restated: str | None = None  # a tool call: the whole input its start carried


class MessagesDecoder:
    """Read one upstream Messages stream, event by event."""

    def __init__(self, message_id: str, *, upstream_name: str = "the upstream server"
                 ) -> None:
        self.message_id = message_id  # for the ids of calls the upstream left without one
        self.upstream_name = upstream_name
        self.ignored: dict[str, int] = {}  # event types with nothing to decode, by count
        self.started = False
        self.done = False
        self.stop_reason: str | None = None
        self.output = False  # any text, thinking or tool call came
        self._usage: dict[str, int] = {}
        self._timings: Timings | None = None  # llama.cpp's, should a server add them
        self._parts: dict[int, list[_Part]] = {}  # open parts by block index
        self._synthetic_ids = 0

    def feed(self, event: Upstream, name: str | None = None) -> Out:
        """Decode one event: its parsed ``data:`` payload, and the SSE ``event:`` name
        (llama-server's error data has a ``type`` of its own; the name says ``error``)."""
        if self.done:
            return []
        kind = event.get("type")
        if name == "error" or kind == "error":
            return self._fail(event)
        if "timings" in event:
            self._timings = read_timings(event["timings"]) or self._timings
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self.ignored[str(kind)] = self.ignored.get(str(kind), 0) + 1
            return []
        try:
            out = handler(self, event)
        except (TypeError, AttributeError, KeyError, ValueError):
            # A malformed event (wrong field types): counted and reported in the request's
            # log, not guessed at. Nothing of it reaches the encoder.
            self.ignored[f"malformed {kind}"] = self.ignored.get(f"malformed {kind}", 0) + 1
            return []
        self.output = self.output or any(isinstance(e, OUTPUT) for e in out)
        if out and not self.started:
            self.started = True
            out.insert(0, Started(None))
        return out

    def finish(self) -> Out:
        """End of the HTTP body. A stream that said how it stopped (``message_delta``) is
        complete without its ``message_stop``; one that did not was cut off."""
        if self.done:
            return []
        if self.stop_reason is not None:
            return self._end()
        self.done = True
        return [Failed(Failure(f"{self.upstream_name} closed the stream before the "
                               "response was complete"))]

    def whole(self, message: Upstream) -> Out:
        """A whole answer (a server that ignored ``stream: true``, or answered 200 with an
        error body) as the events its stream would have been."""
        if message.get("type") == "error" or "error" in message:
            return self._fail(message)
        if "timings" in message:
            self._timings = read_timings(message["timings"])
        out = self.feed({"type": "message_start", "message": message})
        for index, block in enumerate(message.get("content") or ()):
            if not isinstance(block, Mapping):
                continue
            out += self.feed({"type": "content_block_start", "index": index,
                              "content_block": block})
            out += self.feed({"type": "content_block_stop", "index": index})
        out += self.feed({"type": "message_delta", "delta": {
            "stop_reason": message.get("stop_reason") or "end_turn"}})
        return out + self.feed({"type": "message_stop"})

    # -- parts -----------------------------------------------------------------------------

    def _part(self, index: int, kind: str) -> _Part:
        """The open part of ``kind`` at ``index``, opened now if a delta came first."""
        for part in self._parts.get(index, ()):
            if part.kind == kind:
                return part
        part = _Part(kind, f"{kind}_{index}")
        self._parts.setdefault(index, []).append(part)
        return part

    def _call_id(self, block: Upstream) -> str:
        call_id = block.get("id")
        if isinstance(call_id, str) and call_id:
            return call_id
        self._synthetic_ids += 1
        return f"call_lmsd_{self.message_id[-12:]}_{self._synthetic_ids}"

    # -- event handlers --------------------------------------------------------------------

    def _on_message_start(self, event: Upstream) -> Out:
        message = event.get("message") or {}
        self._take_usage(message.get("usage"))
        self.started = True
        response_id = message.get("id")
        return [Started(response_id if isinstance(response_id, str) and response_id
                        else None)]

    def _on_block_start(self, event: Upstream) -> Out:
        index = int(event["index"])
        block = event.get("content_block") or {}
        kind = block.get("type")
        if kind == "text":
            part = self._part(index, TEXT)
            return [TextDelta(part.key, block["text"])] if block.get("text") else []
        if kind == "thinking":
            part = self._part(index, THINKING)
            text = block.get("thinking")
            return [ReasoningDelta(part.key, text)] if isinstance(text, str) and text else []
        if kind in ("tool_use", "server_tool_use"):
            name = block.get("name")
            if not isinstance(name, str) or not name:
                self.done = True
                return [Failed(as_error(classify(NAMELESS_CALL, "server_error"), None,
                                        name=self.upstream_name))]
            part = self._part(index, TOOL)
            given = block.get("input")
            if isinstance(given, Mapping) and given:
                part.restated = dumps(dict(given))
            return [ToolCallStarted(part.key, self._call_id(block), name)]
        self.ignored[f"block {kind}"] = self.ignored.get(f"block {kind}", 0) + 1
        return []  # redacted_thinking and the like: nothing to show

    def _on_block_delta(self, event: Upstream) -> Out:
        index = int(event["index"])
        delta = event.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            return [TextDelta(self._part(index, TEXT).key, str(delta["text"]))]
        if kind == "thinking_delta":
            return [ReasoningDelta(self._part(index, THINKING).key, str(delta["thinking"]))]
        if kind == "input_json_delta":
            part = next((p for p in self._parts.get(index, ()) if p.kind == TOOL), None)
            fragment = str(delta["partial_json"])
            if part is None:  # no call started at this index: no name to give it
                raise ValueError(index)
            if not fragment:
                return []
            part.streamed = True
            return [ToolArgumentsDelta(part.key, fragment)]
        if kind not in ("signature_delta", "citations_delta"):
            self.ignored[f"delta {kind}"] = self.ignored.get(f"delta {kind}", 0) + 1
        return []

    def _on_block_stop(self, event: Upstream) -> Out:
        return [_done(part) for part in self._parts.pop(int(event["index"]), ())]

    def _on_message_delta(self, event: Upstream) -> Out:
        delta = event.get("delta") or {}
        reason = delta.get("stop_reason")
        if isinstance(reason, str) and reason:
            self.stop_reason = reason
        self._take_usage(event.get("usage"))
        return []

    def _on_message_stop(self, event: Upstream) -> Out:
        if self.stop_reason is None and not self.output:
            self.done = True  # an end with nothing in it and no stop reason: cut, not empty
            return [unfinished(self.upstream_name)]
        return self._end()

    def _on_ping(self, event: Upstream) -> Out:
        return []

    # -- the end ---------------------------------------------------------------------------

    def _take_usage(self, usage: Any) -> None:
        """Counts as reported; a later event's count replaces an earlier one's (Anthropic
        sends cumulative counts)."""
        if isinstance(usage, Mapping):
            for field in _USAGE:
                value = usage.get(field)
                if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                    self._usage[field] = value

    def _end(self) -> Out:
        self.done = True
        out: Out = []
        for index in sorted(self._parts):  # llama-server closes blocks late, or never
            out += [_done(part) for part in self._parts[index]]
        self._parts.clear()
        usage = _usage(self._usage, self._timings or Timings()) if self._usage else None
        return [*out, Finished(_STOPS.get(self.stop_reason or "", "end"), usage)]

    def _fail(self, event: Upstream) -> Out:
        """An ``error`` event of any common shape: an overflow in any wording is still an
        overflow."""
        self.done = True
        return [Failed(as_error(read_failure(event), None, name=self.upstream_name))]


def _usage(u: dict[str, int], t: Timings) -> Usage:
    """Anthropic's counts as the pivot's: the whole context, and what was prefilled when
    the server said what it read from its cache (or sent llama.cpp's ``timings``)."""
    cached = u.get("cache_read_input_tokens", 0)
    computed = u.get("input_tokens", 0) + u.get("cache_creation_input_tokens", 0)
    prefilled = t.prompt_n if t.prompt_n is not None else \
        computed if "cache_read_input_tokens" in u else None
    return Usage(input_tokens=computed + cached, cached_tokens=cached,
                 output_tokens=u.get("output_tokens", 0), prefilled_tokens=prefilled,
                 prefill_ms=t.prompt_ms)


def _done(part: _Part) -> Event:
    if part.kind == TEXT:
        return TextDone(part.key)
    if part.kind == THINKING:
        return ReasoningDone(part.key)
    return ToolCallDone(part.key, None if part.streamed else part.restated)


_HANDLERS: dict[str, Callable[[MessagesDecoder, Upstream], Out]] = {
    "message_start": MessagesDecoder._on_message_start,
    "content_block_start": MessagesDecoder._on_block_start,
    "content_block_delta": MessagesDecoder._on_block_delta,
    "content_block_stop": MessagesDecoder._on_block_stop,
    "message_delta": MessagesDecoder._on_message_delta,
    "message_stop": MessagesDecoder._on_message_stop,
    "ping": MessagesDecoder._on_ping,
}
