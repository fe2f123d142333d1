"""Scripting types: what the emulated model replies, and which faults to inject."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

ArgsMode = Literal["deltas", "done_only"]
FaultKind = Literal["http", "drop", "error_event", "failed", "slow_first_byte", "hang"]


@dataclass(frozen=True)
class Text:
    """An assistant message with one output_text part."""

    text: str


@dataclass(frozen=True)
class Reasoning:
    """A reasoning item, streamed LM Studio style (one reasoning_text.done, no deltas)."""

    text: str


@dataclass(frozen=True)
class Call:
    """A function call; `arguments` is a dict (JSON-encoded) or a raw string sent verbatim.

    `args_mode="done_only"` emits no argument deltas (LM Studio does this with Qwen3).
    `call_id` overrides the generated ``call_<digits>`` id.
    """

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    args_mode: ArgsMode = "deltas"
    call_id: str | None = None

    @property
    def arguments_json(self) -> str:
        """The arguments exactly as they go on the wire."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, separators=(",", ":"))


OutputPart = Text | Reasoning | Call


class Reply:
    """One scripted model turn: output items in order; `incomplete` ends with
    response.incomplete (reason max_output_tokens) instead of response.completed."""

    def __init__(self, *items: OutputPart, incomplete: bool = False) -> None:
        self.items: tuple[OutputPart, ...] = items
        self.incomplete = incomplete

    def __repr__(self) -> str:
        return f"Reply({', '.join(map(repr, self.items))}, incomplete={self.incomplete})"


class DropConnection(Exception):
    """Raised by a body generator to make the server close the connection mid-response."""


@dataclass(frozen=True)
class Fault:
    """A failure applied to one /v1/responses or /v1/messages request (queued with
    `Emulator.inject`; on /v1/messages, `failed` is an `error` event after message_start).

    Faults that produce no output (http, failed, hang) leave the scripted replies queued;
    drop, error_event and slow_first_byte consume a reply like a normal request.
    """

    kind: FaultKind
    status: int = 500
    message: str = ""
    code: str | None = None
    after_events: int = 0
    seconds: float = 0.0

    @classmethod
    def http(cls, status: int = 500, message: str = "Internal server error") -> Fault:
        """Answer with an HTTP error status and an OpenAI-style error body."""
        return cls("http", status=status, message=message)

    @classmethod
    def drop(cls, after_events: int = 0) -> Fault:
        """Close the connection abruptly after `after_events` SSE events (no terminal event).

        Non-streaming requests get a truncated JSON body instead.
        """
        return cls("drop", after_events=after_events)

    @classmethod
    def error_event(
        cls, after_events: int = 0, message: str = "Generation failed", code: str = "server_error"
    ) -> Fault:
        """Send `after_events` events, then an `error` event, then end the stream.

        Non-streaming requests get HTTP 500 with the same message and code.
        """
        return cls("error_event", after_events=after_events, message=message, code=code)

    @classmethod
    def failed(cls, message: str = "Generation failed", code: str = "server_error") -> Fault:
        """Finish with response.failed (status "failed", error {code, message})."""
        return cls("failed", message=message, code=code)

    @classmethod
    def slow_first_byte(cls, seconds: float) -> Fault:
        """Sleep `seconds` before sending the response headers, then answer normally."""
        return cls("slow_first_byte", seconds=seconds)

    @classmethod
    def hang(cls) -> Fault:
        """Accept the request and never send a byte until the client goes away."""
        return cls("hang")
