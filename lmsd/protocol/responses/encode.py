"""Pivot events -> OpenAI Responses stream events for the client: a pure state machine.

What Codex CLI 0.171 needs (the research notes' ``codex-front.md`` section 5, captures in
``codex-traffic``):

- ``response.output_item.done`` with the whole item for every output item: without it
  Codex ignores ``response.completed.output`` and runs nothing (``grammar-no_item_done``);
- the full grammar anyway (``created``, ``in_progress``, ``output_item.added``,
  ``content_part.added``, text and argument deltas, ``.done`` events), each event with a
  ``sequence_number``: the deltas drive Codex's live display;
- reasoning as a synthesized ``reasoning`` item (``summary: []``, ``reasoning_text``
  content), which Codex keeps silently and echoes;
- calls as Codex knows the tool (``tools.ToolMap``): a flattened namespaced call goes back
  as ``function_call{name, namespace}``, a custom tool's as ``custom_tool_call{input}``;
- ``usage.input_tokens`` is the whole context, cached included: Codex decides its
  auto-compaction from it;
- the end is ``response.completed``, ``response.incomplete`` (output limit) or
  ``response.failed {error: {code, message}}``, never an ``error`` event (Codex ignores
  those and retries). ``context_length_exceeded`` makes Codex stop with "ran out of room".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..encoder import PivotEncoder
from ..failures import Failure
from ..openai_errors import CONTEXT_LENGTH_EXCEEDED, render_openai
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
from ..tokens import context_usage, text_tokens
from .tools import ToolMap, ToolRef

Out = list[dict[str, Any]]
MESSAGE, REASONING, CALL = "message", "reasoning", "call"


@dataclass
class _Item:
    kind: str
    index: int
    id: str
    text: str = ""  # text, reasoning text or call arguments so far
    call_id: str = ""
    ref: ToolRef | None = None
    closed: bool = False

    def json(self, status: str) -> dict[str, Any]:
        if self.kind == MESSAGE:
            return {"id": self.id, "type": "message", "status": status, "role": "assistant",
                    "content": [_text_part(self.text)] if status != "in_progress" else []}
        if self.kind == REASONING:
            return {"id": self.id, "type": "reasoning", "summary": [],
                    "content": [{"type": "reasoning_text", "text": self.text}]
                    if status != "in_progress" else []}
        assert self.ref is not None
        if self.ref.kind == "custom":
            return {"id": self.id, "type": "custom_tool_call", "status": status,
                    "call_id": self.call_id, "name": self.ref.name,
                    "input": custom_input(self.text) if status != "in_progress" else ""}
        item: dict[str, Any] = {"id": self.id, "type": "function_call", "status": status,
                                "call_id": self.call_id, "name": self.ref.name,
                                "arguments": self.text if status != "in_progress" else ""}
        if self.ref.namespace:
            item["namespace"] = self.ref.namespace
        return item


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def custom_input(arguments: str) -> str:
    """A custom tool's free-text input from the function arguments the model wrote
    (``{"input": ...}``); arguments of any other shape are passed as they are."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get("input"), str):
        return value["input"]
    return arguments


def failure_code(failure: Failure) -> tuple[str, str]:
    """(code, message) of a ``response.failed``: ``context_length_exceeded`` stops Codex
    at once, ``invalid_prompt`` too (a refused request fails the same way again);
    ``server_error`` and ``rate_limit_exceeded`` are retried."""
    rendered = render_openai(failure)
    if rendered.code == CONTEXT_LENGTH_EXCEEDED:
        return CONTEXT_LENGTH_EXCEEDED, rendered.message
    if rendered.status == 429:
        return "rate_limit_exceeded", rendered.message
    if rendered.status == 400:
        return "invalid_prompt", rendered.message
    return "server_error", rendered.message


class ResponsesEncoder(PivotEncoder):
    """Encode one answer's pivot events as one Responses stream."""

    def __init__(self, *, response_id: str, model: str, estimate: int, tools: ToolMap,
                 created_at: int, upstream_name: str = "LM Studio",
                 drop_calls: bool = False) -> None:
        self.response_id = response_id  # the client's id; the upstream's is kept apart
        self.model = model
        self.estimate = estimate
        self.tools = tools
        self.created_at = created_at
        self.upstream_name = upstream_name
        self.drop_calls = drop_calls  # a compaction's answer is its text: calls are dropped
        self.upstream_response_id: str | None = None
        self.started = self.done = False
        self.status = "in_progress"
        self.failure: Failure | None = None
        self.upstream_usage: Usage | None = None
        self.response: dict[str, Any] | None = None  # the final response object
        self._items: dict[tuple[str, str], _Item] = {}
        self._ids: set[str] = set()
        self.completed: list[_Item] = []  # closed items, in the order Codex records them
        self._seq = 0

    # -- public API ------------------------------------------------------------------------

    def start(self) -> Out:
        if self.started:
            return []
        self.started = True
        return [self._event("response.created", response=self._response()),
                self._event("response.in_progress", response=self._response())]

    def fail(self, error: Failure) -> Out:
        """End with ``response.failed``; an open item is never completed (a half-written
        call must not run)."""
        if self.done:
            return []
        out = self.start()
        self.done, self.failure, self.status = True, error, "failed"
        code, message = failure_code(error)
        self.response = self._response(error={"code": code, "message": message})
        return [*out, self._event("response.failed", response=self.response)]

    @property
    def output(self) -> list[dict[str, Any]]:
        # by output_index: a text part may complete after a call made inside it (a
        # repaired call printed in the middle of the text)
        return [item.json("completed") for item in sorted(self.completed,
                                                          key=lambda i: i.index)]

    @property
    def usage(self) -> dict[str, Any]:
        uncached, cached = context_usage(self.upstream_usage, self.estimate)
        output = self.upstream_usage.output_tokens if self.upstream_usage else 0
        reasoning = sum(text_tokens(i.text) for i in self.completed if i.kind == REASONING)
        return {"input_tokens": uncached + cached,
                "input_tokens_details": {"cached_tokens": cached},
                "output_tokens": output,
                "output_tokens_details": {"reasoning_tokens": min(reasoning, output)},
                "total_tokens": uncached + cached + output}

    # -- plumbing --------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def _response(self, **fields: Any) -> dict[str, Any]:
        final = self.status != "in_progress"
        return {"id": self.response_id, "object": "response", "created_at": self.created_at,
                "status": self.status, "model": self.model, "error": None,
                "incomplete_details": None, "output": self.output if final else [],
                "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
                "usage": self.usage if final else None, **fields}

    def _new_id(self, key: str, prefix: str) -> str:
        """The upstream's item id where it gave one (Codex echoes it), else lmsd's."""
        base = key.split("/")[0]
        if not base or base.startswith("#") or base in self._ids:
            base = f"{prefix}_{self.response_id.removeprefix('resp_')}_{len(self._items)}"
        self._ids.add(base)
        return base

    def _open(self, kind: str, key: str, prefix: str, **fields: Any) -> tuple[_Item, Out]:
        item = self._items.get((kind, key))
        if item is not None:
            return item, []
        item = _Item(kind, len(self._items), self._new_id(key, prefix), **fields)
        self._items[(kind, key)] = item
        out = [self._event("response.output_item.added", output_index=item.index,
                           item=item.json("in_progress"))]
        if kind == MESSAGE:
            out.append(self._event("response.content_part.added", item_id=item.id,
                                   output_index=item.index, content_index=0,
                                   part=_text_part("")))
        return item, out

    def _close(self, item: _Item) -> Out:
        if item.closed:
            return []
        item.closed = True
        self.completed.append(item)
        at = {"item_id": item.id, "output_index": item.index}
        out: Out = []
        if item.kind == MESSAGE:
            out += [self._event("response.output_text.done", **at, content_index=0,
                                text=item.text, logprobs=[]),
                    self._event("response.content_part.done", **at, content_index=0,
                                part=_text_part(item.text))]
        elif item.kind == REASONING:
            out.append(self._event("response.reasoning_text.done", **at, content_index=0,
                                   text=item.text))
        elif item.ref is not None and item.ref.kind == "function":
            out.append(self._event("response.function_call_arguments.done", **at,
                                   arguments=item.text))
        out.append(self._event("response.output_item.done", output_index=item.index,
                               item=item.json("completed")))
        return out

    def _delta(self, item: _Item, delta: str) -> Out:
        if not delta or item.closed:
            return []
        item.text += delta
        at = {"item_id": item.id, "output_index": item.index}
        if item.kind == MESSAGE:
            return [self._event("response.output_text.delta", **at, content_index=0,
                                delta=delta, logprobs=[])]
        if item.kind == REASONING:
            return [self._event("response.reasoning_text.delta", **at, content_index=0,
                                delta=delta)]
        if item.ref is not None and item.ref.kind == "function":
            return [self._event("response.function_call_arguments.delta", **at, delta=delta)]
        return []  # a custom tool's input goes out whole, in output_item.done

    def _rest(self, item: _Item, whole: str | None) -> Out:
        """What a restated whole text adds to the deltas already sent."""
        if whole is None or len(whole) <= len(item.text):
            return []
        if whole.startswith(item.text):
            return self._delta(item, whole[len(item.text):])
        if item.kind == CALL:
            item.text = whole  # arguments restated differently: the whole ones win
        return []

    # -- pivot event handlers --------------------------------------------------------------

    def _on_started(self, event: Started) -> Out:
        self.upstream_response_id = event.response_id or self.upstream_response_id
        return []

    def _on_text_delta(self, event: TextDelta) -> Out:
        item, out = self._open(MESSAGE, event.key, "msg")
        return out + self._delta(item, event.text)

    def _on_text_done(self, event: TextDone) -> Out:
        item, out = self._open(MESSAGE, event.key, "msg")
        return out + self._rest(item, event.text) + self._close(item)

    def _on_reasoning_delta(self, event: ReasoningDelta) -> Out:
        if not event.text and (REASONING, event.key) not in self._items:
            return []
        item, out = self._open(REASONING, event.key, "rs")
        return out + self._delta(item, event.text)

    def _on_reasoning_done(self, event: ReasoningDone) -> Out:
        if not event.text and (REASONING, event.key) not in self._items:
            return []  # empty reasoning: no item
        item, out = self._open(REASONING, event.key, "rs")
        return out + self._rest(item, event.text) + self._close(item)

    def _on_tool_started(self, event: ToolCallStarted) -> Out:
        if self.drop_calls:
            return []
        _, out = self._open(CALL, event.key, "fc", call_id=event.call_id,
                            ref=self.tools.client_ref(event.name))
        return out

    def _on_tool_delta(self, event: ToolArgumentsDelta) -> Out:
        item = self._items.get((CALL, event.key))
        return self._delta(item, event.delta) if item is not None else []

    def _on_tool_done(self, event: ToolCallDone) -> Out:
        item = self._items.get((CALL, event.key))
        if item is None or item.closed:
            return []
        return self._rest(item, event.arguments) + self._close(item)

    def _on_finished(self, event: Finished) -> Out:
        self.upstream_response_id = event.response_id or self.upstream_response_id
        if event.usage is not None:
            self.upstream_usage = event.usage
        out: Out = []
        for item in list(self._items.values()):
            if not item.closed and (item.kind != CALL or event.stop == "end"):
                out += self._close(item)
        self.done = True
        if event.stop == "end":
            self.status = "completed"
            self.response = self._response()
            return [*out, self._event("response.completed", response=self.response)]
        self.status = "incomplete"
        reason = "content_filter" if event.stop == "filter" else "max_output_tokens"
        self.response = self._response(incomplete_details={"reason": reason})
        return [*out, self._event("response.incomplete", response=self.response)]

    def _on_failed(self, event: Failed) -> Out:
        return self.fail(event.error)


_HANDLERS: dict[type, Any] = {
    Started: ResponsesEncoder._on_started,
    TextDelta: ResponsesEncoder._on_text_delta,
    TextDone: ResponsesEncoder._on_text_done,
    ReasoningDelta: ResponsesEncoder._on_reasoning_delta,
    ReasoningDone: ResponsesEncoder._on_reasoning_done,
    ToolCallStarted: ResponsesEncoder._on_tool_started,
    ToolArgumentsDelta: ResponsesEncoder._on_tool_delta,
    ToolCallDone: ResponsesEncoder._on_tool_done,
    Finished: ResponsesEncoder._on_finished,
    Failed: ResponsesEncoder._on_failed,
}
ResponsesEncoder.handlers = _HANDLERS
