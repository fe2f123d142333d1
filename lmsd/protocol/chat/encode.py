"""Pivot events -> ``chat.completion.chunk`` objects (the client face): a pure state machine.

What the openai SDK and chat agents rely on, whatever the upstream did:

- every chunk carries the same ``id``, ``object``, ``created`` and ``model``;
- the first delta is ``{role: "assistant", content: ""}``; text follows as ``content``;
- a tool call opens with ``{index, id, type: "function", function: {name, arguments: ""}}``
  and its arguments follow as ``{index, function: {arguments}}`` (a call whose arguments
  stayed empty gets ``{}``, so that clients can parse them);
- reasoning goes out as ``reasoning_content`` only when the front asks for it;
- text stops at the first ``stop`` sequence, which the client never sees (``stops.py``);
- the last choice carries ``finish_reason`` (``stop``, ``tool_calls``, ``length``,
  ``content_filter``); with ``include_usage`` a chunk with ``choices: []`` and the usage
  of the whole context follows; then :data:`DONE`. A failure ends the stream with one
  ``{"error": {...}}`` and no ``DONE`` (the SDK raises ``APIError`` on it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..encoder import PivotEncoder
from ..failures import Failure
from ..openai_errors import OpenAIError, render_openai
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
    dumps,
)
from ..stops import StopScanner
from ..text import json_utf8
from ..tokens import context_usage, text_tokens

#: The stream's last line on success (``data: [DONE]``).
DONE = "[DONE]"
Out = list[Any]  # chunk dicts, an error dict, or DONE
FINISH = {"length": "length", "filter": "content_filter"}


@dataclass(slots=True)
class _Call:
    index: int
    id: str
    name: str
    arguments: str = ""


class ChatEncoder(PivotEncoder):
    """Encode one answer's pivot events as one chat completion stream."""

    def __init__(self, *, completion_id: str, model: str, created: int, input_tokens: int,
                 include_usage: bool = False, reasoning: bool = False,
                 stop: tuple[str, ...] = (), capped: bool = False,
                 upstream_name: str = "LM Studio") -> None:
        self.completion_id = completion_id
        self.model = model
        self.created = created
        self.estimate = input_tokens
        self.include_usage = include_usage
        self.reasoning = reasoning
        self.capped = capped  # lmsd lowered max_tokens: a cut there is not the client's limit
        self.upstream_name = upstream_name
        self._stops = StopScanner(stop) if stop else None
        self._held = ""  # text that may begin a stop sequence
        self.started = False
        self.done = False
        self.content = ""  # the text sent
        self.reasoning_text = ""  # every reasoning text seen (sent only with ``reasoning``)
        self.calls: dict[str, _Call] = {}
        self.finish_reason: str | None = None
        self.stop_sequence: str | None = None
        self.response_id: str | None = None
        self.upstream_usage: Usage | None = None
        self.failure: Failure | None = None
        self.error: OpenAIError | None = None
        self._seen: dict[tuple[str, str], str] = {}  # (kind, key) -> text received

    # -- public API --------------------------------------------------------------------

    def chunk(self, delta: dict[str, Any] | None, finish: str | None = None
              ) -> dict[str, Any]:
        choices = [] if delta is None else [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        return {"id": self.completion_id, "object": "chat.completion.chunk",
                "created": self.created, "model": self.model, "choices": choices}

    def start(self) -> Out:
        if self.started:
            return []
        self.started = True
        return [self.chunk({"role": "assistant", "content": ""})]

    def fail(self, error: Failure) -> Out:
        """End the stream with ``{"error": {...}}`` in OpenAI's words."""
        if self.done:
            return []
        self.done = True
        self.failure, self.error = error, render_openai(error)
        return [*self.start(), self.error.body()]

    @property
    def usage(self) -> dict[str, Any]:
        """Usage of the whole context (cached included): agents compact on it."""
        uncached, cached = context_usage(self.upstream_usage, self.estimate)
        reasoning = text_tokens(self.reasoning_text)
        if self.upstream_usage is not None:
            output = self.upstream_usage.output_tokens
        else:
            output = text_tokens(self.content) + reasoning + sum(
                text_tokens(c.arguments) for c in self.calls.values())
        prompt = uncached + cached
        return {"prompt_tokens": prompt, "completion_tokens": output,
                "total_tokens": prompt + output,
                "prompt_tokens_details": {"cached_tokens": cached},
                "completion_tokens_details": {"reasoning_tokens": min(reasoning, output)}}

    def message(self) -> dict[str, Any]:
        """The assistant message the client now holds."""
        out: dict[str, Any] = {"role": "assistant", "content": self.content or None}
        if self.calls:
            out["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                "name": c.name, "arguments": c.arguments}} for c in self.calls.values()]
        if self.reasoning and self.reasoning_text:
            out["reasoning_content"] = self.reasoning_text
        return out

    # -- text, with stop sequences -------------------------------------------------------

    def _more(self, kind: str, key: str, delta: str) -> None:
        self._seen[(kind, key)] = self._seen.get((kind, key), "") + delta

    def _rest(self, kind: str, key: str, whole: str | None) -> str:
        """What a restated whole text adds to the deltas already received."""
        seen = self._seen.get((kind, key), "")
        if whole is not None and len(whole) > len(seen) and whole.startswith(seen):
            return whole[len(seen):]
        return ""

    def _text(self, key: str, delta: str) -> Out:
        if not delta:
            return []
        self._more("text", key, delta)
        if self._stops is None:
            return self._send_text(delta)
        text, self._held, seq = self._stops.scan(self._held + delta)
        out = self._send_text(text)
        if seq is not None:
            self.stop_sequence = seq
            out += self._complete("stop")
        return out

    def _send_text(self, text: str) -> Out:
        if not text:
            return []
        self.content += text
        return [self.chunk({"content": text})]

    def _reasoning(self, key: str, delta: str) -> Out:
        if not delta:
            return []
        self._more("reasoning", key, delta)
        self.reasoning_text += delta
        return [self.chunk({"reasoning_content": delta})] if self.reasoning else []

    # -- tool calls ----------------------------------------------------------------------

    def _arguments(self, call: _Call, delta: str) -> Out:
        if not delta:
            return []
        call.arguments += delta
        return [self.chunk({"tool_calls": [{"index": call.index,
                                             "function": {"arguments": delta}}]})]

    # -- pivot event handlers ---------------------------------------------------------------

    def _on_started(self, event: Started) -> Out:
        self.response_id = event.response_id or self.response_id
        return []

    def _on_text_delta(self, event: TextDelta) -> Out:
        return self._text(event.key, event.text)

    def _on_text_done(self, event: TextDone) -> Out:
        return self._text(event.key, self._rest("text", event.key, event.text))

    def _on_reasoning_delta(self, event: ReasoningDelta) -> Out:
        return self._reasoning(event.key, event.text)

    def _on_reasoning_done(self, event: ReasoningDone) -> Out:
        return self._reasoning(event.key, self._rest("reasoning", event.key, event.text))

    def _on_tool_started(self, event: ToolCallStarted) -> Out:
        if event.key in self.calls:
            return []
        call = self.calls[event.key] = _Call(len(self.calls), event.call_id, event.name)
        return [self.chunk({"tool_calls": [{"index": call.index, "id": call.id,
                                             "type": "function", "function": {
                                                 "name": call.name, "arguments": ""}}]})]

    def _on_tool_delta(self, event: ToolArgumentsDelta) -> Out:
        call = self.calls.get(event.key)
        return self._arguments(call, event.delta) if call is not None else []

    def _on_tool_done(self, event: ToolCallDone) -> Out:
        call = self.calls.get(event.key)
        if call is None or event.arguments is None:
            return []
        if event.arguments.startswith(call.arguments):
            return self._arguments(call, event.arguments[len(call.arguments):])
        return []  # what was sent cannot be taken back

    def _on_finished(self, event: Finished) -> Out:
        self.response_id = event.response_id or self.response_id
        if event.usage is not None:
            self.upstream_usage = event.usage
        if event.stop == "end":
            return self._complete("tool_calls" if self.calls else "stop")
        if event.stop == "length" and self.capped:
            return self._complete("tool_calls" if self.calls else "stop")
        return self._complete(FINISH[event.stop])

    def _on_failed(self, event: Failed) -> Out:
        return self.fail(event.error)

    # -- completion -------------------------------------------------------------------------

    def _complete(self, finish_reason: str) -> Out:
        out: Out = []
        if self._held and self.stop_sequence is None:
            out += self._send_text(self._held)
        self._held = ""
        for call in self.calls.values():
            if not call.arguments:
                out += self._arguments(call, "{}")
        self.finish_reason = finish_reason
        self.done = True
        out.append(self.chunk({}, finish_reason))
        if self.include_usage:
            out.append({**self.chunk(None), "usage": self.usage})
        out.append(DONE)
        return out


_HANDLERS: dict[type, Callable[[ChatEncoder, Any], Out]] = {
    Started: ChatEncoder._on_started,
    TextDelta: ChatEncoder._on_text_delta,
    TextDone: ChatEncoder._on_text_done,
    ReasoningDelta: ChatEncoder._on_reasoning_delta,
    ReasoningDone: ChatEncoder._on_reasoning_done,
    ToolCallStarted: ChatEncoder._on_tool_started,
    ToolArgumentsDelta: ChatEncoder._on_tool_delta,
    ToolCallDone: ChatEncoder._on_tool_done,
    Finished: ChatEncoder._on_finished,
    Failed: ChatEncoder._on_failed,
}


def encode_sse(items: Out) -> bytes:
    """Chunks as SSE ``data:`` lines (no event names), ``DONE`` as ``data: [DONE]``."""
    return b"".join(
        json_utf8(f"data: {item}\n\n" if isinstance(item, str) else f"data: {dumps(item)}\n\n")
        for item in items)


#: A keep-alive while the upstream is silent: an SSE comment every client skips.
PING = b": ping\n\n"
ChatEncoder.handlers = _HANDLERS
