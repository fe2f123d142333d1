"""The Responses front's side of one exchange (``exchange.Reply``): pivot events in,
Responses events out, and the answer as Codex will echo it next request.

``turn()`` runs the answer's output items through the same conversion as the front
(``front.assistant_item``), so Codex's echo (ids, status and reasoning stripped) is this
exact turn by construction, and the chain matcher finds the node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..pivot import Event, Item, Turn
from ..reply import EncodedReply
from .encode import ResponsesEncoder
from .front import assistant_item

_CONTENT = ("response.output_item.added", "response.output_text.delta",
            "response.reasoning_text.delta", "response.function_call_arguments.delta")


class ResponsesReply(EncodedReply):
    """One answer to Codex (or any Responses client), streamed or not."""

    encoder: ResponsesEncoder

    def __init__(self, encoder: ResponsesEncoder, *, message_id: str,
                 on_answer: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__(encoder)
        self.message_id = message_id  # lmsd's request id, as the logs name it
        #: Given the response object once it is final (completed or incomplete), before
        #: the client sees it: kept there, the id it names is already known when the
        #: client's next request (``previous_response_id``) arrives.
        self.on_answer = on_answer

    def feed(self, event: Event) -> list[Any]:
        out = super().feed(event)
        e = self.encoder
        if self.on_answer is not None and e.response is not None and \
                e.status in ("completed", "incomplete"):
            self.on_answer, on_answer = None, self.on_answer
            on_answer(e.response)
        return out

    @property
    def response_id(self) -> str | None:
        """The upstream's stored response (what the next turn chains from)."""
        return self.encoder.upstream_response_id

    @property
    def cut_short(self) -> bool:
        return False  # Responses has no stop sequences for lmsd to enforce

    @property
    def chainable(self) -> bool:
        e = self.encoder
        return e.status == "completed" and e.failure is None and \
            e.upstream_response_id is not None

    def is_content(self, out: list[dict[str, Any]]) -> bool:
        return any(e["type"] in _CONTENT for e in out)

    def turn(self) -> Turn:
        items: list[Item] = []
        for i, output in enumerate(self.encoder.output):
            item = assistant_item(output, f"output[{i}]", self.encoder.tools)
            if item is not None:
                items.append(item)
        return tuple(items)

    def result(self) -> dict[str, Any]:
        """The ``stream: false`` body, or raise the failure (rendered for the route)."""
        if self.encoder.failure is not None:
            raise self.encoder.failure
        assert self.encoder.response is not None
        return self.encoder.response

    def log_fields(self) -> dict[str, Any]:
        e = self.encoder
        fields: dict[str, Any] = {"front": "openai_responses", "status": e.status,
                                  "response_id": e.upstream_response_id}
        if e.status in ("completed", "incomplete"):
            usage = e.usage
            fields.update(input_tokens=usage["input_tokens"],
                          output_tokens=usage["output_tokens"])
        if e.failure is not None:
            fields.update(error_type=type(e.failure).__name__, error=e.failure.message)
        return fields
