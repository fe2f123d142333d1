"""Chat Completions stream chunks -> pivot events.

For servers without ``/v1/responses`` (Ollama, llama.cpp's servers, vLLM, LM Studio's
chat endpoint). A chat stream has one text, one reasoning and tool calls by ``index``;
``finish_reason`` says how it ended and usage (``stream_options.include_usage``) comes
in a chunk of its own, so the ending is decided once the stream is over. A ``[DONE]``
after nothing, with no ``finish_reason``, is no empty answer but a cut one
(llama-cpp-python's, when another request interrupted it): a failure. llama-server's
``timings`` (on its last chunk) say what it prefilled (``protocol/servers/prefill.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..failures import as_error, classify, event_failure
from ..pivot import (
    Event,
    Failed,
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolArgumentsDelta,
    ToolCallStarted,
    Usage,
    unfinished,
)
from ..servers.prefill import Timings, read_timings

Chunk = dict[str, Any]
TEXT, REASONING = "msg_0", "rs_0"  # the keys of the one text and the one reasoning
NAMELESS_CALL = "the upstream sent a tool call without a tool name"


@dataclass(slots=True)
class _Call:
    id: str | None = None
    name: str | None = None
    args: str = ""  # every fragment so far
    pending: str = ""  # fragments that came before the name
    started: bool = False


class ChatDecoder:
    """Chat completion chunks in, pivot events out.

    Tool-call deltas go by ``index``; a call's id and name may come before, with or
    after its first argument fragment, repeated on every chunk (llama-cpp-python), and
    arguments may come as fragments or as growing snapshots. ``finish_reason`` decides
    the ending; usage is taken when it comes.
    """

    def __init__(self, message_id: str, *, upstream_name: str = "the upstream server"
                 ) -> None:
        self.message_id = message_id
        self.upstream_name = upstream_name
        self.chunks = 0
        self.done = False
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.timings: Timings | None = None  # llama-server's, from its last chunk
        self._calls: dict[int, _Call] = {}
        self._held: dict[int, list[Event]] = {}  # a call's events while an earlier one waits
        self.output = False  # any text, reasoning or tool call came

    def feed(self, data: str) -> list[Event]:
        """One SSE ``data:`` payload (a JSON chunk, or ``[DONE]``)."""
        if self.done:
            return []
        if data.strip() == "[DONE]":
            return self._end()
        try:
            chunk = json.loads(data)
        except ValueError:
            return []
        if not isinstance(chunk, dict):
            return []
        out: list[Event] = []
        if self.chunks == 0:
            out.append(Started(str(chunk.get("id") or self.message_id)))
        self.chunks += 1
        error = chunk.get("error")
        if isinstance(error, dict):
            return [*out, self._failed({**error, "type": "error"})]
        if chunk.get("object") == "error":  # vLLM's flat error shape
            return [*out, self._failed({**chunk, "type": "error"})]
        if isinstance(error, str) and error.strip() and not chunk.get("choices"):
            # LM Studio answers an unknown endpoint (and some failures) with HTTP 200
            # and {"error": "<text>"}: an error, not an empty answer.
            return [*out, self._failed({"type": "error", "message": error.strip()})]
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        if "timings" in chunk:
            self.timings = read_timings(chunk["timings"]) or self.timings
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            if isinstance(delta, dict):
                events = self._delta(delta)
                self.output = self.output or bool(events) or bool(self._calls)
                out += events
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        return out

    def finish(self) -> list[Event]:
        """End of the HTTP body. Without ``[DONE]``, a stream that said how it finished
        is complete; one that did not is cut off (the encoder reports it)."""
        if self.done or self.finish_reason is None:
            return []
        return self._end()

    @property
    def empty(self) -> bool:
        """Nothing at all came: llama-cpp-python answers an over-long streamed prompt
        with an empty 200."""
        return self.chunks == 0 and not self.done

    def _failed(self, error_event: Chunk) -> Failed:
        """An error chunk, read as an ``error`` event of any common shape."""
        self.done = True
        return Failed(as_error(event_failure(error_event), None, name=self.upstream_name))

    def _delta(self, delta: Chunk) -> list[Event]:
        out: list[Event] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            out.append(ReasoningDelta(REASONING, reasoning))
        text = delta.get("content")
        if isinstance(text, str) and text:
            out.append(TextDelta(TEXT, text))
        for position, call in enumerate(delta.get("tool_calls") or ()):
            if isinstance(call, dict):
                out += self._in_order(*self._tool_call(call, position))
        return out

    def _in_order(self, index: int, events: list[Event]) -> list[Event]:
        """Keep tool calls in index order: hold a call while an earlier one has not
        started (its name has not come yet), then release in order."""
        self._held.setdefault(index, []).extend(events)
        out: list[Event] = []
        for i in sorted(self._held):
            if any(not c.started for j, c in self._calls.items() if j < i):
                break
            out += self._held.pop(i)
        return out

    def _tool_call(self, call: Chunk, position: int) -> tuple[int, list[Event]]:
        index = call.get("index") if isinstance(call.get("index"), int) else position
        state = self._calls.setdefault(index, _Call())
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        if call.get("id") and not state.id:
            state.id = str(call["id"])
        if function.get("name") and not state.name:
            state.name = str(function["name"])
        fragment = function.get("arguments")
        fragment = fragment if isinstance(fragment, str) else ""
        if state.args and fragment.startswith(state.args):
            fragment = fragment[len(state.args):]  # a growing snapshot, not a fragment
        state.args += fragment
        key = f"fc_{index}"
        out: list[Event] = []
        if not state.started:
            if not state.name:
                state.pending += fragment  # the name comes later
                return index, []
            state.started = True
            out.append(ToolCallStarted(
                key, state.id or f"call_{self.message_id[-12:]}_{index}", state.name))
            fragment, state.pending = state.pending + fragment, ""
        if fragment:
            out.append(ToolArgumentsDelta(key, fragment))
        return index, out

    def _end(self) -> list[Event]:
        self.done = True
        if any(not call.started for call in self._calls.values()):
            failure = classify(NAMELESS_CALL, "server_error")
            return [Failed(as_error(failure, None, name=self.upstream_name))]
        reason = self.finish_reason
        if reason is None and not self.output:
            return [unfinished(self.upstream_name)]
        usage = _usage(self.usage, self.timings)
        if reason == "length":
            return [Finished("length", usage)]
        if reason == "content_filter":
            return [Finished("filter", usage)]
        return [Finished("end", usage)]


def _usage(usage: Chunk | None, timings: Timings | None) -> Usage | None:
    """The usage chunk, with what ``timings`` add: the prefill, and the cached count when
    the usage has none. Without a usage chunk, ``timings`` alone are the engine's count."""
    t = timings or Timings()
    if usage:
        details = usage.get("prompt_tokens_details")
        details = details if isinstance(details, dict) else {}
        cached = _count(details["cached_tokens"]) if "cached_tokens" in details \
            else t.cache_n or 0
        return Usage(input_tokens=_count(usage.get("prompt_tokens")), cached_tokens=cached,
                     output_tokens=_count(usage.get("completion_tokens")),
                     prefilled_tokens=t.prompt_n, prefill_ms=t.prompt_ms)
    if t.prompt_n is None:
        return None
    return Usage(input_tokens=t.prompt_n + (t.cache_n or 0), cached_tokens=t.cache_n or 0,
                 output_tokens=t.predicted_n or 0, prefilled_tokens=t.prompt_n,
                 prefill_ms=t.prompt_ms)


def _count(value: Any) -> int:
    """A token count as the server wrote it; one that is not a number counts as 0."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
