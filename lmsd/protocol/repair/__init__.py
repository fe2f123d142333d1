"""STAND-IN until ``repair-core`` lands: recognizes only a whole reply that is one
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` of a declared tool.
Replaced by the real streaming filter on merge."""

from __future__ import annotations

import json

from ..pivot import (
    Event,
    Finished,
    FunctionTool,
    TextDelta,
    TextDone,
    ToolArgumentsDelta,
    ToolCallDone,
    ToolCallStarted,
)


class ToolCallRepair:
    def __init__(self, tools: tuple[FunctionTool, ...], *, call_id_prefix: str = "call_lmsd_"
                 ) -> None:
        self.names = {t.name for t in tools}
        self.prefix = call_id_prefix
        self.repairs: list[str] = []
        self._held: list[Event] = []
        self._text = ""

    def feed(self, event: Event) -> list[Event]:
        if isinstance(event, TextDelta):
            self._held.append(event)
            self._text += event.text
            return []
        if isinstance(event, TextDone):
            self._held.append(event)
            return []
        if isinstance(event, Finished):
            call = self._call()
            if call is not None:
                self._held = []
                self.repairs.append("hermes_json")
                key = f"repair{len(self.repairs)}"
                call_id = f"{self.prefix}{len(self.repairs)}"
                args = json.dumps(call[1], ensure_ascii=False, separators=(",", ":"))
                return [ToolCallStarted(key, call_id, call[0]), ToolArgumentsDelta(key, args),
                        ToolCallDone(key, args), event]
        return [*self.finish(), event]

    def finish(self) -> list[Event]:
        held, self._held, self._text = self._held, [], ""
        return held

    def _call(self) -> tuple[str, dict[str, object]] | None:
        text = self._text.strip()
        if not (text.startswith("<tool_call>") and text.endswith("</tool_call>")):
            return None
        try:
            data = json.loads(text[len("<tool_call>"):-len("</tool_call>")])
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("name") not in self.names or \
                not isinstance(data.get("arguments"), dict):
            return None
        return data["name"], data["arguments"]
