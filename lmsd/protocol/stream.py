"""Responses stream events -> Anthropic stream events: a pure state machine.

Feed it parsed upstream events (``feed``), then ``finish`` at end of stream; each call
returns the Anthropic events to send. Guarantees, whatever the upstream does:

- exactly one ``message_start`` first, then content blocks with contiguous indices, each
  started, given deltas and stopped exactly once, one at a time (Anthropic never
  interleaves blocks; an upstream that does is serialized by holding the later block's
  deltas until the earlier one is done);
- thinking blocks end with a ``signature_delta`` before their ``content_block_stop``;
- ``tool_use`` ids are the upstream ``call_id``, never the ``fc_`` item id;
- the stream ends with ``message_delta`` + ``message_stop``, or with one ``error`` event.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import AnthropicError, from_failure
from .failures import event_failure
from .tokens import anthropic_usage, context_usage, text_tokens

Event = dict[str, Any]


@dataclass(slots=True)
class _Block:
    kind: str  # "text" | "thinking" | "tool_use"
    start: dict[str, Any]
    pending: list[Event] = field(default_factory=list)  # deltas held while another block is open
    sent: str = ""  # text / thinking / arguments emitted so far
    held: str = ""  # text held back while it may be the start of a stop sequence
    index: int = -1
    live: bool = False  # tool arguments: streaming as they come (they start with "{")
    finished: bool = False  # upstream said this block is complete
    open: bool = False
    closed: bool = False


def thinking_signature(text: str) -> str:
    """A stable signature for locally generated thinking (Claude Code requires one)."""
    return "lmsd1." + hashlib.sha256(text.encode()).hexdigest()[:32]


class StreamConverter:
    """Convert one upstream Responses stream into one Anthropic message stream."""

    def __init__(
        self,
        *,
        message_id: str,
        model: str,
        input_tokens: int,
        stop_sequences: list[str] | tuple[str, ...] = (),
        capped: bool = False,
        upstream_name: str = "LM Studio",
    ) -> None:
        self.upstream_name = upstream_name
        self.message_id = message_id
        # lmsd lowered the client's max_tokens (max_tokens_cap): a reply cut there did not
        # reach the client's limit, so it ends as end_turn (Claude Code would otherwise
        # report its own output limit as exceeded and retry).
        self.capped = capped
        self.model = model
        self.estimate = input_tokens
        self.stop_sequences = tuple(stop_sequences)
        self._holdback = max((len(s) for s in self.stop_sequences), default=1) - 1
        self.started = False
        self.done = False  # message_stop or error has been emitted
        self.error: AnthropicError | None = None
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self.response_id: str | None = None
        self.upstream_usage: dict[str, Any] | None = None
        self.output_tokens = 0
        self.ignored: dict[str, int] = {}  # upstream event types with nothing to convert
        self._blocks: dict[tuple[str, str], _Block] = {}  # (kind, upstream key) -> block
        self._order: list[_Block] = []  # blocks in the order they appeared upstream
        self._aliases: dict[int, str] = {}  # output_index -> item id
        self._last_key: dict[str, str] = {}  # kind -> most recent key (for id-less events)
        self._next_index = 0
        self._cursor = 0  # position in _order of the first block not yet closed
        self._synthetic_ids = 0

    # -- public API --------------------------------------------------------------------

    def start(self) -> list[Event]:
        """The ``message_start`` event; send it before the upstream answers."""
        if self.started:
            return []
        self.started = True
        return [{
            "type": "message_start",
            "message": {
                "id": self.message_id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": anthropic_usage(input_tokens=self.estimate, output_tokens=0),
            },
        }]

    def feed(self, event: Event) -> list[Event]:
        """Convert one upstream event (a parsed ``data:`` payload)."""
        if self.done:
            return []
        out = self.start()
        kind = event.get("type")
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self.ignored[str(kind)] = self.ignored.get(str(kind), 0) + 1
            return out
        try:
            out += handler(self, event)
        except (TypeError, AttributeError, KeyError, ValueError):
            # A malformed event (wrong field types): counted and reported in the request's
            # log line, not guessed at. The stream stays valid.
            self.ignored[f"malformed {kind}"] = self.ignored.get(f"malformed {kind}", 0) + 1
        return out

    def finish(self) -> list[Event]:
        """The upstream stream ended. Without a terminal event that is an error."""
        if self.done:
            return []
        return self.fail(AnthropicError(
            "api_error", f"{self.upstream_name} closed the stream before the response was "
            "complete"
        ))

    def fail(self, error: AnthropicError) -> list[Event]:
        """End the stream with an Anthropic ``error`` event."""
        if self.done:
            return []
        out = self.start()
        self.done = True
        self.error = error
        out.append({"type": "error", "error": {"type": error.type, "message": error.message}})
        return out

    @property
    def usage(self) -> dict[str, Any]:
        uncached, cached = context_usage(self.upstream_usage, self.estimate)
        return anthropic_usage(
            input_tokens=uncached, output_tokens=self.output_tokens, cache_read=cached
        )

    # -- block bookkeeping -------------------------------------------------------------

    def _key(self, event: Event, kind: str) -> str:
        item_id = event.get("item_id")
        if isinstance(item_id, str) and item_id:
            return item_id
        index = event.get("output_index")
        if isinstance(index, int):
            return self._aliases.get(index, f"#{index}")
        return self._last_key.get(kind, f"#{kind}")

    def _block(self, key: str, kind: str, start: dict[str, Any]) -> _Block:
        block = self._blocks.get((kind, key))
        if block is None:
            block = _Block(kind, start)
            self._blocks[(kind, key)] = block
            self._order.append(block)
            self._last_key[kind] = key
        return block

    def _active(self) -> _Block | None:
        return self._order[self._cursor] if self._cursor < len(self._order) else None

    def _emit(self, block: _Block, delta: dict[str, Any]) -> list[Event]:
        event = {"type": "content_block_delta", "index": -1, "delta": delta}
        if block is self._active():
            return [*self._open(block), dict(event, index=block.index)]
        block.pending.append(event)
        return []

    def _open(self, block: _Block) -> list[Event]:
        if block.open:
            return []
        block.open = True
        block.index = self._next_index
        self._next_index += 1
        out: list[Event] = [
            {"type": "content_block_start", "index": block.index, "content_block": block.start}
        ]
        for event in block.pending:
            out.append(dict(event, index=block.index))
        block.pending.clear()
        return out

    def _close_finished(self) -> list[Event]:
        """Close the active block while upstream has finished it, opening the next."""
        out: list[Event] = []
        while (block := self._active()) is not None and block.finished:
            self._cursor += 1
            block.closed = True
            if not (block.open or block.pending or block.sent or block.held):
                continue  # nothing ever arrived for it: no empty block
            out += self._open(block)
            out += self._flush_held(block)
            if block.kind == "thinking":
                out.append({
                    "type": "content_block_delta",
                    "index": block.index,
                    "delta": {"type": "signature_delta", "signature": thinking_signature(
                        block.sent)},
                })
            out.append({"type": "content_block_stop", "index": block.index})
        if (block := self._active()) is not None and (block.pending or block.kind == "tool_use"):
            out += self._open(block)
        return out

    def _finish_block(self, block: _Block) -> list[Event]:
        block.finished = True
        return self._close_finished()

    # -- text, with stop sequences -------------------------------------------------------

    def _text(self, key: str, delta: str) -> list[Event]:
        block = self._block(key, "text", {"type": "text", "text": ""})
        if block.finished or not delta:
            return []
        if not self.stop_sequences:
            block.sent += delta
            return self._emit(block, {"type": "text_delta", "text": delta})
        text = block.held + delta
        hits = [(text.find(s), s) for s in self.stop_sequences if s in text]
        if hits:
            at, seq = min(hits)
            block.held = ""
            out = self._emit_text(block, text[:at])
            return out + self._stop_at_sequence(seq)
        keep = self._partial_stop_suffix(text)
        block.held = text[len(text) - keep:] if keep else ""
        return self._emit_text(block, text[: len(text) - keep])

    def _emit_text(self, block: _Block, text: str) -> list[Event]:
        if not text:
            return []
        block.sent += text
        return self._emit(block, {"type": "text_delta", "text": text})

    def _partial_stop_suffix(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that begins some stop sequence."""
        for size in range(min(self._holdback, len(text)), 0, -1):
            tail = text[-size:]
            if any(s.startswith(tail) for s in self.stop_sequences):
                return size
        return 0

    def _flush_held(self, block: _Block) -> list[Event]:
        if not block.held:
            return []
        text, block.held = block.held, ""
        block.sent += text
        return [{"type": "content_block_delta", "index": block.index,
                 "delta": {"type": "text_delta", "text": text}}]

    def _text_done(self, key: str, text: Any) -> list[Event]:
        block = self._block(key, "text", {"type": "text", "text": ""})
        out: list[Event] = []
        if isinstance(text, str):
            already = block.sent + block.held
            if text.startswith(already) and len(text) > len(already):
                out += self._text(key, text[len(already):])
                if self.done:
                    return out
        return out + self._finish_block(block)

    def _stop_at_sequence(self, seq: str) -> list[Event]:
        self.stop_sequence = seq
        return self._complete("stop_sequence")

    # -- event handlers -------------------------------------------------------------------

    def _on_created(self, event: Event) -> list[Event]:
        response = event.get("response") or {}
        self.response_id = response.get("id") or self.response_id
        return []

    def _on_item_added(self, event: Event) -> list[Event]:
        item = event.get("item") or {}
        item_id = item.get("id")
        index = event.get("output_index")
        kind = item.get("type")
        key = item_id if isinstance(item_id, str) and item_id else None
        if key and isinstance(index, int):
            self._aliases[index] = key
        key = key or (f"#{index}" if isinstance(index, int) else f"#{kind}")
        if kind == "function_call":
            if not _s(item.get("name")):
                return self.fail(AnthropicError(
                    "api_error", "the upstream sent a tool call without a tool name"))
            call_id = _s(item.get("call_id")) or _s(item_id)
            if not call_id:
                self._synthetic_ids += 1
                call_id = f"call_lmsd_{self.message_id[-12:]}_{self._synthetic_ids}"
            block = self._block(key, "tool_use", {
                "type": "tool_use", "id": call_id, "name": _s(item.get("name")), "input": {},
            })
            out = self._open(block) if block is self._active() else []
            return out + self._arguments(block, _s(item.get("arguments")))
        if kind == "reasoning":
            self._last_key["thinking"] = key
        elif kind == "message":
            self._last_key["text"] = key
        return []

    def _arguments(self, block: _Block | None, delta: str) -> list[Event]:
        if block is None or block.kind != "tool_use" or block.finished or not delta:
            return []
        block.sent += delta
        if block.live:
            return self._emit(block, {"type": "input_json_delta", "partial_json": delta})
        if block.sent.lstrip().startswith("{"):
            block.live = True
            return self._emit(block, {"type": "input_json_delta", "partial_json": block.sent})
        return []  # blank so far, or not an object: settled in _complete_arguments

    def _on_args_delta(self, event: Event) -> list[Event]:
        block = self._blocks.get(("tool_use", self._key(event, "tool_use")))
        return self._arguments(block, _s(event.get("delta")))

    def _on_args_done(self, event: Event) -> list[Event]:
        block = self._blocks.get(("tool_use", self._key(event, "tool_use")))
        if block is None or block.finished:
            return []
        return self._complete_arguments(block, _s(event.get("arguments")) or None)

    def _complete_arguments(self, block: _Block, arguments: Any) -> list[Event]:
        """Emit what the final arguments add, then close the tool_use block.

        Arguments that are not a JSON object (some local models emit bare text) would
        crash Claude Code's parser. They are wrapped in a field no tool schema allows,
        so that Claude Code returns a validation error the model can act on.
        """
        out: list[Event] = []
        if isinstance(arguments, str):
            if arguments.startswith(block.sent):
                out += self._arguments(block, arguments[len(block.sent):])
            elif not block.live:
                block.sent = arguments
        if not block.live and block.sent.strip():
            wrapped = json.dumps({"__lmsd_invalid_arguments": block.sent}, ensure_ascii=False)
            block.sent = wrapped
            out += self._emit(block, {"type": "input_json_delta", "partial_json": wrapped})
        return out + self._finish_block(block)

    def _on_item_done(self, event: Event) -> list[Event]:
        item = event.get("item") or {}
        item_id = item.get("id")
        index = event.get("output_index")
        if isinstance(item_id, str) and item_id in {k for _, k in self._blocks}:
            key = item_id
        elif isinstance(index, int):
            key = self._aliases.get(index, f"#{index}")
        else:
            key = item_id or ""
        kind = item.get("type")
        out: list[Event] = []
        if kind == "function_call":
            block = self._blocks.get(("tool_use", key))
            if block is None:
                out += self._on_item_added(event)
                block = self._blocks.get(("tool_use", key))
            if block is not None and not block.finished:
                out += self._complete_arguments(block, _s(item.get("arguments")) or None)
            return out
        if kind == "message":
            for i, part in enumerate(item.get("content") or ()):
                if part.get("type") in ("output_text", "refusal"):
                    text = part.get("text", part.get("refusal"))
                    out += self._text_done(_part_key(key, i), text)
                    if self.done:
                        return out
        elif kind == "reasoning":
            parts = item.get("content") or []
            for i, part in enumerate(parts):
                if part.get("type") == "reasoning_text":
                    out += self._thinking_done(_part_key(key, i), part.get("text"))
            if not parts:
                for i, part in enumerate(item.get("summary") or ()):
                    out += self._thinking_done(_part_key(key, f"s{i}"), part.get("text"))
        return out

    def _on_text_delta(self, event: Event) -> list[Event]:
        key = _part_key(self._key(event, "text"), event.get("content_index", 0))
        return self._text(key, _s(event.get("delta")))

    def _on_text_done(self, event: Event) -> list[Event]:
        key = _part_key(self._key(event, "text"), event.get("content_index", 0))
        return self._text_done(key, _s(event.get("text")) or None)

    def _on_refusal_delta(self, event: Event) -> list[Event]:
        key = _part_key(self._key(event, "text"), event.get("content_index", 0))
        return self._text(key, _s(event.get("delta")))

    def _on_refusal_done(self, event: Event) -> list[Event]:
        key = _part_key(self._key(event, "text"), event.get("content_index", 0))
        return self._text_done(key, event.get("refusal"))

    def _thinking(self, key: str, delta: str) -> list[Event]:
        block = self._block(key, "thinking", {"type": "thinking", "thinking": "", "signature": ""})
        if block.finished or not delta:
            return []
        block.sent += delta
        return self._emit(block, {"type": "thinking_delta", "thinking": delta})

    def _thinking_done(self, key: str, text: Any) -> list[Event]:
        block = self._blocks.get(("thinking", key))
        if block is not None and block.finished:
            return []
        already = block.sent if block else ""
        out: list[Event] = []
        if isinstance(text, str) and text.startswith(already) and len(text) > len(already):
            out += self._thinking(key, text[len(already):])
            block = self._blocks[("thinking", key)]
        if block is None:
            return out  # empty reasoning: nothing to show
        return out + self._finish_block(block)

    def _on_reasoning_delta(self, event: Event) -> list[Event]:
        key = _part_key(self._key(event, "thinking"), event.get("content_index", 0))
        return self._thinking(key, _s(event.get("delta")))

    def _on_reasoning_done(self, event: Event) -> list[Event]:
        key = _part_key(self._key(event, "thinking"), event.get("content_index", 0))
        return self._thinking_done(key, _s(event.get("text")) or None)

    def _on_summary_delta(self, event: Event) -> list[Event]:
        key = _part_key(self._key(event, "thinking"), f"s{event.get('summary_index', 0)}")
        return self._thinking(key, _s(event.get("delta")))

    def _on_summary_done(self, event: Event) -> list[Event]:
        key = _part_key(self._key(event, "thinking"), f"s{event.get('summary_index', 0)}")
        return self._thinking_done(key, _s(event.get("text")) or None)

    def _on_completed(self, event: Event) -> list[Event]:
        response = event.get("response") or {}
        self._take_usage(response)
        return self._complete("tool_use" if self._has_tool_use() else "end_turn")

    def _on_incomplete(self, event: Event) -> list[Event]:
        response = event.get("response") or {}
        self._take_usage(response)
        reason = (response.get("incomplete_details") or {}).get("reason")
        if reason == "content_filter":
            return self._complete("refusal")
        return self._complete("end_turn" if self.capped else "max_tokens")

    def _on_failure(self, event: Event) -> list[Event]:
        """``error`` and ``response.failed``: an overflow in any wording is still an overflow."""
        return self.fail(from_failure(event_failure(event), estimate=self.estimate,
                                      name=self.upstream_name))

    # -- completion -------------------------------------------------------------------------

    def _has_tool_use(self) -> bool:
        return any(b.kind == "tool_use" for b in self._order)

    def _take_usage(self, response: dict[str, Any]) -> None:
        self.response_id = response.get("id") or self.response_id
        usage = response.get("usage")
        if isinstance(usage, dict):
            self.upstream_usage = usage
            self.output_tokens = int(usage.get("output_tokens") or 0)

    def _complete(self, stop_reason: str) -> list[Event]:
        out: list[Event] = []
        for block in self._order:
            if block.kind == "tool_use" and not block.finished:
                out += self._complete_arguments(block, None)
            block.finished = True
        out += self._close_finished()
        if self.upstream_usage is None:
            self.output_tokens = sum(text_tokens(b.sent) for b in self._order)
        self.stop_reason = stop_reason
        self.done = True
        out.append({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": self.stop_sequence},
            "usage": self.usage,
        })
        out.append({"type": "message_stop"})
        return out


def _s(value: Any) -> str:
    """A string field from an upstream event; anything else counts as absent."""
    return value if isinstance(value, str) else ""


def _part_key(item_key: str, part: Any) -> str:
    return f"{item_key}/{part}"


_HANDLERS = {
    "response.created": StreamConverter._on_created,
    "response.output_item.added": StreamConverter._on_item_added,
    "response.output_item.done": StreamConverter._on_item_done,
    "response.output_text.delta": StreamConverter._on_text_delta,
    "response.output_text.done": StreamConverter._on_text_done,
    "response.refusal.delta": StreamConverter._on_refusal_delta,
    "response.refusal.done": StreamConverter._on_refusal_done,
    "response.function_call_arguments.delta": StreamConverter._on_args_delta,
    "response.function_call_arguments.done": StreamConverter._on_args_done,
    "response.reasoning_text.delta": StreamConverter._on_reasoning_delta,
    "response.reasoning_text.done": StreamConverter._on_reasoning_done,
    "response.reasoning_summary_text.delta": StreamConverter._on_summary_delta,
    "response.reasoning_summary_text.done": StreamConverter._on_summary_done,
    "response.completed": StreamConverter._on_completed,
    "response.incomplete": StreamConverter._on_incomplete,
    "response.failed": StreamConverter._on_failure,
    "error": StreamConverter._on_failure,
}
