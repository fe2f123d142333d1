"""One proxied turn: send the Responses request, feed the converter, emit Anthropic events.

The same runner serves ``stream: true`` (events are SSE-encoded and sent as they come)
and ``stream: false`` (events are folded into one Message), so both paths agree.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from .log import event, logger
from .protocol.errors import AnthropicError
from .protocol.stream import StreamConverter
from .upstream import Upstream

Emit = Callable[[list[dict[str, Any]]], Awaitable[None]]


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


@dataclass
class Exchange:
    """Everything about one request that the runner and the logs need."""

    upstream: Upstream
    body: dict[str, Any]
    converter: StreamConverter
    session: str = "default"
    stream: bool = True
    started_at: float = field(default_factory=trio.current_time)
    first_token_at: float | None = None
    outcome: str = "pending"

    async def run(self, emit: Emit) -> None:
        """Drive the upstream stream to the end; never raises except on cancellation."""
        converter = self.converter
        try:
            async with self.upstream.responses_stream(
                self.body, estimate=converter.estimate
            ) as batches:
                async for batch in batches:
                    out = []
                    for upstream_event in batch:
                        out += converter.feed(upstream_event)
                    if out:
                        if self.first_token_at is None and _has_content(out):
                            self.first_token_at = trio.current_time()
                        await emit(out)
                    if converter.done and converter.stop_sequence is not None:
                        break  # lmsd ended the turn: closing the stream stops generation
                # Otherwise the body is read to its end (just the terminator after
                # response.completed), so httpx can pool the connection.
            out = converter.finish()
        except AnthropicError as exc:
            out = converter.fail(exc)
        except Exception as exc:  # a bug of ours: report it, keep the daemon serving
            logger.exception("request.internal_error id=%s", converter.message_id)
            out = converter.fail(AnthropicError("api_error", f"lmsd internal error: {exc!r}"))
        if out:
            await emit(out)
        self.outcome = "error" if converter.error else "ok"

    def log_end(self, *, cancelled: bool = False) -> None:
        converter = self.converter
        now = trio.current_time()
        fields: dict[str, Any] = {
            "id": converter.message_id,
            "session": self.session,
            "model": converter.model,
            "upstream_model": self.body.get("model"),
            "stream": self.stream,
            "outcome": "cancelled" if cancelled else self.outcome,
            "duration_ms": round((now - self.started_at) * 1000, 1),
        }
        if self.first_token_at is not None:
            fields["ttft_ms"] = round((self.first_token_at - self.started_at) * 1000, 1)
        if converter.stop_reason:
            usage = converter.usage
            fields.update(
                stop_reason=converter.stop_reason,
                input_tokens=usage["input_tokens"] + usage["cache_read_input_tokens"],
                output_tokens=usage["output_tokens"],
                response_id=converter.response_id,
            )
        if converter.error:
            fields.update(error_type=converter.error.type, error=converter.error.message)
        if converter.ignored:
            fields["ignored_upstream_events"] = converter.ignored
        event("request.end", level=30 if converter.error else 20, **fields)


def _has_content(events: list[dict[str, Any]]) -> bool:
    return any(e["type"] in ("content_block_delta", "content_block_start") for e in events)
