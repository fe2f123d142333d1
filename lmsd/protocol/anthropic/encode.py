"""Pivot events -> Anthropic stream events: a pure state machine.

Feed it the pivot events of one answer (``feed``), then ``finish`` at end of stream;
each call returns the Anthropic events to send. Guarantees, whatever the upstream did:

- exactly one ``message_start`` first, then content blocks with contiguous indices, each
  started, given deltas and stopped exactly once, one at a time (Anthropic never
  interleaves blocks; an upstream that does is serialized by holding the later block's
  deltas until the earlier one is done);
- no empty block: a part that never got any content is skipped;
- thinking blocks end with a ``signature_delta`` before their ``content_block_stop``;
- ``tool_use`` ids are the upstream ``call_id`` (the decoders never pass an item id);
- tool arguments that are not a JSON object are wrapped so that Claude Code can parse
  them (see ``_complete_arguments``);
- text stops at the first stop sequence, which the client never sees (``stops.py``);
- the stream ends with ``message_delta`` + ``message_stop``, or with one ``error``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..encoder import PivotEncoder
from ..failures import Failure
from ..pivot import (
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
)
from ..stops import StopScanner
from ..tokens import anthropic_usage, context_usage, text_tokens
from .blocks import TEXT, THINKING, TOOL, Block, Blocks, Out, thinking_signature
from .errors import AnthropicError, render

__all__ = ["AnthropicEncoder", "thinking_signature"]


class AnthropicEncoder(PivotEncoder):
    """Encode one answer's pivot events as one Anthropic message stream."""

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
        self._stops = StopScanner(self.stop_sequences) if self.stop_sequences else None
        self.started = False
        self.done = False  # message_stop or error has been emitted
        self.error: AnthropicError | None = None  # as Claude Code is told
        self.failure: Failure | None = None  # what went wrong, in neutral terms
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self.response_id: str | None = None
        self.upstream_usage: Usage | None = None
        self.output_tokens = 0
        self._blocks = Blocks()

    # -- public API --------------------------------------------------------------------

    def start(self) -> Out:
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

    def fail(self, error: Failure) -> Out:
        """End the stream with an Anthropic ``error`` event (a failure rendered for
        Claude Code, the prompt size from the estimate when the server did not say)."""
        if self.done:
            return []
        rendered = render(error, estimate=self.estimate)
        out = self.start()
        self.done = True
        self.error, self.failure = rendered, error
        out.append({"type": "error", "error": {"type": rendered.type,
                                               "message": rendered.message}})
        return out

    @property
    def usage(self) -> dict[str, Any]:
        uncached, cached = context_usage(self.upstream_usage, self.estimate)
        return anthropic_usage(
            input_tokens=uncached, output_tokens=self.output_tokens, cache_read=cached
        )

    # -- text, with stop sequences -------------------------------------------------------

    def _text(self, key: str, delta: str) -> Out:
        block = self._blocks.get_or_add(TEXT, key, {"type": "text", "text": ""})
        if block.finished or not delta:
            return []
        if self._stops is None:
            block.add(delta)
            return self._blocks.emit(block, {"type": "text_delta", "text": delta})
        text, block.held, seq = self._stops.scan(block.held + delta)
        out = self._emit_text(block, text)
        if seq is not None:
            self.stop_sequence = seq
            out += self._complete("stop_sequence")
        return out

    def _emit_text(self, block: Block, text: str) -> Out:
        if not text:
            return []
        block.add(text)
        return self._blocks.emit(block, {"type": "text_delta", "text": text})

    def _text_done(self, key: str, text: str | None) -> Out:
        block = self._blocks.get_or_add(TEXT, key, {"type": "text", "text": ""})
        out: Out = []
        if text is not None and len(text) > block.size + len(block.held):
            already = block.sent() + block.held
            if text.startswith(already):
                out += self._text(key, text[len(already):])
                if self.done:
                    return out
        return out + self._blocks.finish(block)

    # -- thinking ------------------------------------------------------------------------

    def _thinking(self, key: str, delta: str) -> Out:
        block = self._blocks.get_or_add(
            THINKING, key, {"type": "thinking", "thinking": "", "signature": ""})
        if block.finished or not delta:
            return []
        block.add(delta)
        return self._blocks.emit(block, {"type": "thinking_delta", "thinking": delta})

    def _thinking_done(self, key: str, text: str | None) -> Out:
        block = self._blocks.get(THINKING, key)
        if block is not None and block.finished:
            return []
        out: Out = []
        if text is not None and len(text) > (block.size if block else 0):
            already = block.sent() if block else ""
            if text.startswith(already):
                out += self._thinking(key, text[len(already):])
                block = self._blocks.get(THINKING, key)
        if block is None:
            return out  # empty reasoning: nothing to show
        return out + self._blocks.finish(block)

    # -- tool calls ----------------------------------------------------------------------

    def _arguments(self, block: Block | None, delta: str) -> Out:
        if block is None or block.finished or not delta:
            return []
        block.add(delta)
        if block.live:
            return self._blocks.emit(block, {"type": "input_json_delta", "partial_json": delta})
        if (sent := block.sent()).lstrip().startswith("{"):
            block.live = True
            return self._blocks.emit(block, {"type": "input_json_delta", "partial_json": sent})
        return []  # blank so far, or not an object: settled in _complete_arguments

    def _complete_arguments(self, block: Block, arguments: str | None) -> Out:
        """Emit what the final arguments add, then close the tool_use block.

        Arguments that are not a JSON object (some local models emit bare text) would
        crash Claude Code's parser. They are wrapped in a field no tool schema allows,
        so that Claude Code returns a validation error the model can act on.
        """
        out: Out = []
        if arguments is not None:
            sent = block.sent()
            if arguments.startswith(sent):
                out += self._arguments(block, arguments[len(sent):])
            elif not block.live:
                block.replace(arguments)
        if not block.live and (sent := block.sent()).strip():
            wrapped = json.dumps({"__lmsd_invalid_arguments": sent}, ensure_ascii=False)
            block.replace(wrapped)
            out += self._blocks.emit(block, {"type": "input_json_delta", "partial_json": wrapped})
        return out + self._blocks.finish(block)

    # -- pivot event handlers ---------------------------------------------------------------

    def _on_started(self, event: Started) -> Out:
        self.response_id = event.response_id or self.response_id
        return []

    def _on_text_delta(self, event: TextDelta) -> Out:
        return self._text(event.key, event.text)

    def _on_text_done(self, event: TextDone) -> Out:
        return self._text_done(event.key, event.text)

    def _on_reasoning_delta(self, event: ReasoningDelta) -> Out:
        return self._thinking(event.key, event.text)

    def _on_reasoning_done(self, event: ReasoningDone) -> Out:
        return self._thinking_done(event.key, event.text)

    def _on_tool_started(self, event: ToolCallStarted) -> Out:
        block = self._blocks.get_or_add(TOOL, event.key, {
            "type": "tool_use", "id": event.call_id, "name": event.name, "input": {}})
        return self._blocks.open(block) if block is self._blocks.active() else []

    def _on_tool_delta(self, event: ToolArgumentsDelta) -> Out:
        return self._arguments(self._blocks.get(TOOL, event.key), event.delta)

    def _on_tool_done(self, event: ToolCallDone) -> Out:
        block = self._blocks.get(TOOL, event.key)
        if block is None or block.finished:
            return []
        return self._complete_arguments(block, event.arguments)

    def _on_finished(self, event: Finished) -> Out:
        self.response_id = event.response_id or self.response_id
        if event.usage is not None:
            self.upstream_usage = event.usage
            self.output_tokens = event.usage.output_tokens
        if event.stop == "end":
            calls = any(b.kind == TOOL for b in self._blocks.order)
            return self._complete("tool_use" if calls else "end_turn")
        if event.stop == "filter":
            return self._complete("refusal")
        return self._complete("end_turn" if self.capped else "max_tokens")

    def _on_failed(self, event: Failed) -> Out:
        return self.fail(event.error)

    # -- completion -------------------------------------------------------------------------

    def _complete(self, stop_reason: str) -> Out:
        out: Out = []
        for block in self._blocks.order:
            if block.kind == TOOL and not block.finished:
                out += self._complete_arguments(block, None)
            block.finished = True
        out += self._blocks.close_finished()
        if self.upstream_usage is None:
            self.output_tokens = sum(text_tokens(b.sent()) for b in self._blocks.order)
        self.stop_reason = stop_reason
        self.done = True
        out.append({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": self.stop_sequence},
            "usage": self.usage,
        })
        out.append({"type": "message_stop"})
        return out


_HANDLERS: dict[type, Callable[[AnthropicEncoder, Any], Out]] = {
    Started: AnthropicEncoder._on_started,
    TextDelta: AnthropicEncoder._on_text_delta,
    TextDone: AnthropicEncoder._on_text_done,
    ReasoningDelta: AnthropicEncoder._on_reasoning_delta,
    ReasoningDone: AnthropicEncoder._on_reasoning_done,
    ToolCallStarted: AnthropicEncoder._on_tool_started,
    ToolArgumentsDelta: AnthropicEncoder._on_tool_delta,
    ToolCallDone: AnthropicEncoder._on_tool_done,
    Finished: AnthropicEncoder._on_finished,
    Failed: AnthropicEncoder._on_failed,
}
AnthropicEncoder.handlers = _HANDLERS
