"""An upstream decoder composed with the Anthropic encoder, as a dialect and the exchange
compose them at run time: upstream events (or chat chunks) in, Anthropic events out.
For tests that state what a client sees for a given upstream stream."""

from __future__ import annotations

from typing import Any

from lmsd.protocol.anthropic.decode import MessagesDecoder
from lmsd.protocol.anthropic.encode import AnthropicEncoder
from lmsd.protocol.chat.decode import ChatDecoder
from lmsd.protocol.responses.decode import ResponsesDecoder

Events = list[dict[str, Any]]


class ResponsesPipeline:
    """Responses events -> pivot -> Anthropic events."""

    def __init__(self, *, message_id: str = "msg_test", model: str = "m",
                 input_tokens: int = 1000, upstream_name: str = "LM Studio",
                 **encoder: Any) -> None:
        self.decoder = ResponsesDecoder(message_id, upstream_name=upstream_name)
        self.encoder = AnthropicEncoder(message_id=message_id, model=model,
                                        input_tokens=input_tokens,
                                        upstream_name=upstream_name, **encoder)

    def start(self) -> Events:
        return self.encoder.start()

    def feed(self, event: dict[str, Any]) -> Events:
        return [out for e in self.decoder.feed(event) for out in self.encoder.feed(e)]

    def finish(self) -> Events:
        return self.encoder.finish()


class ChatPipeline:
    """Chat completion chunks (SSE ``data:`` payloads) -> pivot -> Anthropic events."""

    def __init__(self, *, message_id: str = "msg_chat", model: str = "m",
                 input_tokens: int = 100, upstream_name: str = "the upstream server",
                 **encoder: Any) -> None:
        self.decoder = ChatDecoder(message_id, upstream_name=upstream_name)
        self.encoder = AnthropicEncoder(message_id=message_id, model=model,
                                        input_tokens=input_tokens,
                                        upstream_name=upstream_name, **encoder)

    def start(self) -> Events:
        return self.encoder.start()

    def feed(self, data: str) -> Events:
        return [out for e in self.decoder.feed(data) for out in self.encoder.feed(e)]

    def finish(self) -> Events:
        """The end of the HTTP body: the decoder's ending, then the encoder's."""
        return [out for e in self.decoder.finish() for out in self.encoder.feed(e)
                ] + self.encoder.finish()


class MessagesPipeline:
    """An engine's Anthropic Messages events -> pivot -> Anthropic events (the messages
    dialect behind the Anthropic front)."""

    def __init__(self, *, message_id: str = "msg_messages", model: str = "m",
                 input_tokens: int = 100, upstream_name: str = "the upstream server",
                 **encoder: Any) -> None:
        self.decoder = MessagesDecoder(message_id, upstream_name=upstream_name)
        self.encoder = AnthropicEncoder(message_id=message_id, model=model,
                                        input_tokens=input_tokens,
                                        upstream_name=upstream_name, **encoder)

    def start(self) -> Events:
        return self.encoder.start()

    def feed(self, event: dict[str, Any], name: str | None = None) -> Events:
        return [out for e in self.decoder.feed(event, name) for out in self.encoder.feed(e)]

    def finish(self) -> Events:
        return [out for e in self.decoder.finish() for out in self.encoder.feed(e)
                ] + self.encoder.finish()


def responses_to_anthropic(events: list[dict[str, Any]], *, finish: bool = True,
                           **settings: Any) -> tuple[ResponsesPipeline, Events]:
    """Run a whole Responses stream: ``message_start``, every event, then the end."""
    pipeline = ResponsesPipeline(**settings)
    out = pipeline.start()
    for event in events:
        out += pipeline.feed(event)
    if finish:
        out += pipeline.finish()
    return pipeline, out
