"""The Chat Completions dialect: Anthropic request -> ``POST /v1/chat/completions``, and
chat stream chunks -> Responses-style events for the one :class:`StreamConverter`.

For servers without ``/v1/responses`` (Ollama, llama.cpp's servers, vLLM, LM Studio's
chat endpoint). They are stateless, so every turn carries the whole history. The
rendering is prefix-stable, as for Responses: the same message always becomes the same
chat messages, so the engine's prefix cache hits turn after turn.
"""

from __future__ import annotations

import json
from typing import Any

Event = dict[str, Any]


class ChatStreamAdapter:
    """Chat completion chunks in, Responses-style events out (for StreamConverter).

    Tool-call deltas go by ``index``; a call's id and name may come before, with or
    after its first argument fragment, repeated on every chunk (llama-cpp-python), and
    arguments may come as fragments or as growing snapshots. ``finish_reason`` decides
    the ending; usage (``stream_options.include_usage``) is taken when it comes.
    """

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.chunks = 0
        self.done = False
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self._calls: dict[int, dict[str, Any]] = {}
        self._held: dict[int, list[Event]] = {}  # a call's events while an earlier one waits

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
            out.append({"type": "response.created",
                        "response": {"id": str(chunk.get("id") or self.message_id)}})
        self.chunks += 1
        error = chunk.get("error")
        if isinstance(error, dict):
            self.done = True
            return [*out, {**error, "type": "error"}]
        if chunk.get("object") == "error":  # vLLM's flat error shape
            self.done = True
            return [*out, {**chunk, "type": "error"}]
        if isinstance(error, str) and error.strip() and not chunk.get("choices"):
            # LM Studio answers an unknown endpoint (and some failures) with HTTP 200
            # and {"error": "<text>"}: an error, not an empty answer.
            self.done = True
            return [*out, {"type": "error", "message": error.strip()}]
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            if isinstance(delta, dict):
                out += self._delta(delta)
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        return out

    def _delta(self, delta: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            out.append({"type": "response.reasoning_text.delta", "item_id": "rs_0",
                        "content_index": 0, "delta": reasoning})
        text = delta.get("content")
        if isinstance(text, str) and text:
            out.append({"type": "response.output_text.delta", "item_id": "msg_0",
                        "content_index": 0, "delta": text})
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
            if any(not c["started"] for j, c in self._calls.items() if j < i):
                break
            out += self._held.pop(i)
        return out

    def _tool_call(self, call: dict[str, Any], position: int) -> tuple[int, list[Event]]:
        index = call.get("index") if isinstance(call.get("index"), int) else position
        state = self._calls.setdefault(index, {"id": None, "name": None, "args": "",
                                               "pending": "", "started": False})
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        if call.get("id") and not state["id"]:
            state["id"] = str(call["id"])
        if function.get("name") and not state["name"]:
            state["name"] = str(function["name"])
        fragment = function.get("arguments")
        fragment = fragment if isinstance(fragment, str) else ""
        if state["args"] and fragment.startswith(state["args"]):
            fragment = fragment[len(state["args"]):]  # a growing snapshot, not a fragment
        state["args"] += fragment
        item_id = f"fc_{index}"
        out: list[Event] = []
        if not state["started"]:
            if not state["name"]:
                state["pending"] += fragment  # the name comes later
                return index, []
            state["started"] = True
            out.append({"type": "response.output_item.added", "item": {
                "id": item_id, "type": "function_call", "name": state["name"],
                "call_id": state["id"] or f"call_{self.message_id[-12:]}_{index}",
                "arguments": ""}})
            fragment, state["pending"] = state["pending"] + fragment, ""
        if fragment:
            out.append({"type": "response.function_call_arguments.delta", "item_id": item_id,
                        "delta": fragment})
        return index, out

    def _end(self) -> list[Event]:
        self.done = True
        if any(not call["started"] for call in self._calls.values()):
            return [{"type": "error", "code": "server_error",
                     "message": "the upstream sent a tool call without a tool name"}]
        usage = None
        if self.usage:
            details = self.usage.get("prompt_tokens_details") or {}
            usage = {"input_tokens": self.usage.get("prompt_tokens") or 0,
                     "output_tokens": self.usage.get("completion_tokens") or 0,
                     "input_tokens_details": {"cached_tokens": details.get("cached_tokens")
                                              or 0}}
        reason = self.finish_reason
        if reason in ("length", "content_filter"):
            return [{"type": "response.incomplete", "response": {
                "usage": usage, "incomplete_details": {
                    "reason": "max_output_tokens" if reason == "length" else reason}}}]
        return [{"type": "response.completed", "response": {"usage": usage}}]

    def finish(self) -> list[Event]:
        """End of the HTTP body. Without ``[DONE]``, a stream that said how it finished
        is complete; one that did not is cut off (the converter reports it)."""
        if self.done or self.finish_reason is None:
            return []
        return self._end()

    @property
    def empty(self) -> bool:
        """Nothing at all came: llama-cpp-python answers an over-long streamed prompt
        with an empty 200."""
        return self.chunks == 0 and not self.done
