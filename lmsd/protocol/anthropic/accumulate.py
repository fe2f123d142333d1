"""Anthropic stream events -> one Message object (for ``stream: false``).

The non-streaming path runs the same converter as the streaming one and folds its
events here, so both paths produce the same content by construction.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import AnthropicError


class MessageAccumulator:
    """Fold Anthropic stream events into the final Message, as the SDKs do."""

    def __init__(self) -> None:
        self.message: dict[str, Any] | None = None
        self.error: AnthropicError | None = None
        self._json: dict[int, str] = {}

    def feed(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "message_start":
            self.message = dict(event["message"], content=[])
            return
        if kind == "error":
            err = event["error"]
            self.error = AnthropicError(err["type"], err["message"])
            return
        message = self.message
        if message is None or kind == "ping":
            return
        if kind == "content_block_start":
            message["content"].append(dict(event["content_block"]))
        elif kind == "content_block_delta":
            block = message["content"][event["index"]]
            delta = event["delta"]
            dtype = delta["type"]
            if dtype == "text_delta":
                block["text"] += delta["text"]
            elif dtype == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif dtype == "signature_delta":
                block["signature"] = delta["signature"]
            elif dtype == "input_json_delta":
                self._json[event["index"]] = self._json.get(event["index"], "") + delta[
                    "partial_json"]
        elif kind == "content_block_stop":
            index = event["index"]
            if index in self._json:
                raw = self._json.pop(index)
                try:
                    message["content"][index]["input"] = json.loads(raw) if raw.strip() else {}
                except ValueError:
                    message["content"][index]["input"] = {"__lmsd_invalid_arguments": raw}
        elif kind == "message_delta":
            message["stop_reason"] = event["delta"].get("stop_reason")
            message["stop_sequence"] = event["delta"].get("stop_sequence")
            message["usage"] = event["usage"]

    def result(self, error: AnthropicError | None = None) -> dict[str, Any]:
        """The final Message, or raise the stream's error.

        ``error`` is the converter's own error, which keeps the HTTP status that an SSE
        ``error`` event cannot carry.
        """
        if error is not None or self.error is not None:
            raise error or self.error  # type: ignore[misc]
        if self.message is None or self.message.get("stop_reason") is None:
            raise AnthropicError("api_error", "the upstream ended the response before it was "
                                 "complete")
        return self.message
