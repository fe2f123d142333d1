"""The chat front's side of one exchange: what the exchange asks of any front.

Pivot events go in and chat completion chunks come out (``ChatEncoder``); the encoder
also keeps the assistant message the client now holds, which is both the ``stream:
false`` answer and, through the same function the front reads messages with, the turn
the chain hashes for the next request.
"""

from __future__ import annotations

from typing import Any

from ..failures import Failure
from ..pivot import Turn
from ..reply import EncodedReply
from .encode import ChatEncoder, Out
from .items import assistant_turn

#: Endings after which the client's next request extends this answer.
CHAINABLE_FINISHES = ("stop", "tool_calls")


class ChatReply(EncodedReply):
    """One answer to an OpenAI chat client, streamed or not."""

    encoder: ChatEncoder

    @property
    def message_id(self) -> str:
        return self.encoder.completion_id

    @property
    def chainable(self) -> bool:
        """Complete as the upstream holds it, so the next turn may chain from it."""
        e = self.encoder
        return (e.finish_reason in CHAINABLE_FINISHES and e.failure is None
                and e.stop_sequence is None and e.response_id is not None)

    def is_content(self, out: Out) -> bool:
        return any(isinstance(c, dict) and c.get("choices") and any(
            k != "role" and v for k, v in c["choices"][0]["delta"].items()) for c in out)

    def turn(self) -> Turn:
        """The answer as the client will send it back next turn."""
        return assistant_turn(self.encoder.message())

    def result(self) -> dict[str, Any]:
        """The ``stream: false`` body, or raise the failure (rendered by the app)."""
        e = self.encoder
        if e.failure is not None:
            raise e.failure
        if e.finish_reason is None:
            raise Failure(f"{e.upstream_name} ended the response before it was complete")
        return {"id": e.completion_id, "object": "chat.completion", "created": e.created,
                "model": e.model, "choices": [{"index": 0, "message": e.message(),
                                               "logprobs": None,
                                               "finish_reason": e.finish_reason}],
                "usage": e.usage}

    def log_fields(self) -> dict[str, Any]:
        """What the ``request.end`` line says of the answer."""
        e = self.encoder
        fields: dict[str, Any] = {"front": "openai_chat"}
        if e.finish_reason:
            usage = e.usage
            fields.update(stop_reason=e.finish_reason, input_tokens=usage["prompt_tokens"],
                          output_tokens=usage["completion_tokens"], response_id=e.response_id)
        if e.error:
            fields.update(error_type=e.error.type, error=e.error.message)
        return fields
