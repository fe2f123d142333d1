"""The Anthropic front's side of one exchange: what the exchange asks of any front.

Pivot events go in and Anthropic events come out (``AnthropicEncoder``); the same events
fold into the Message the client now holds (``MessageAccumulator``), which is both the
``stream: false`` answer and, as a pivot turn, what the chain hashes for the next turn.
"""

from __future__ import annotations

from typing import Any

from ..pivot import Turn
from ..reply import EncodedReply
from .accumulate import MessageAccumulator
from .encode import AnthropicEncoder, Out
from .items import message_turn

#: Stops after which the client's next request extends this answer.
CHAINABLE_STOPS = ("end_turn", "tool_use")
_CONTENT = ("content_block_start", "content_block_delta")


class AnthropicReply(EncodedReply):
    """One answer to Claude Code (or any Anthropic client), streamed or not."""

    encoder: AnthropicEncoder

    def __init__(self, encoder: AnthropicEncoder) -> None:
        super().__init__(encoder)
        self.message = MessageAccumulator()

    @property
    def message_id(self) -> str:
        return self.encoder.message_id

    @property
    def chainable(self) -> bool:
        """Complete, so the next turn may chain from it."""
        e = self.encoder
        return e.stop_reason in CHAINABLE_STOPS and e.error is None and e.response_id is not None

    def is_content(self, out: Out) -> bool:
        return any(e["type"] in _CONTENT for e in out)

    def _seen(self, out: Out) -> Out:
        for e in out:
            self.message.feed(e)
        return super()._seen(out)

    def turn(self) -> Turn:
        """The answer as the client will send it back next turn."""
        content = (self.message.message or {}).get("content", [])
        return message_turn({"role": "assistant", "content": content})

    def result(self) -> dict[str, Any]:
        """The ``stream: false`` body, or raise the rendered error."""
        return self.message.result(self.encoder.error)

    def log_fields(self) -> dict[str, Any]:
        """What the ``request.end`` line says of the answer."""
        e = self.encoder
        fields: dict[str, Any] = {"front": "anthropic"}
        if e.stop_reason:
            usage = e.usage
            fields.update(stop_reason=e.stop_reason,
                          input_tokens=usage["input_tokens"] + usage["cache_read_input_tokens"],
                          output_tokens=usage["output_tokens"], response_id=e.response_id)
        if e.error:
            fields.update(error_type=e.error.type, error=e.error.message)
        return fields
