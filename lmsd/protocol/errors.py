"""Anthropic-shaped errors, and the mapping from upstream failures to them.

Status codes follow what Claude Code 2.1.329 does with each (see README, "Error mapping"):
400 makes it fail fast (and degrade features), 529 gives up after three tries, and
5xx is retried with backoff for about three minutes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: HTTP status for each Anthropic error type.
STATUS_FOR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


@dataclass
class AnthropicError(Exception):
    """An error the client sees, as an HTTP error body or an SSE ``error`` event."""

    type: str
    message: str
    status: int = 0
    overflow: bool = False  # a context overflow: the prompt, not the chain, is at fault

    def __post_init__(self) -> None:
        if not self.status:
            self.status = STATUS_FOR_TYPE.get(self.type, 500)
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self.type, "message": self.message}}


def invalid(message: str) -> AnthropicError:
    return AnthropicError("invalid_request_error", message)


# LM Studio (llama.cpp engine): "Trying to keep the first 15857 tokens when context the
# overflows. However, the model is loaded with context length of only 4096 tokens ..."
_KEEP_FIRST = re.compile(
    r"keep the first (\d+) tokens.*?context length of only (\d+)", re.IGNORECASE | re.DOTALL
)
# OpenAI-style and llama-server wordings.
_OPENAI_STYLE = re.compile(
    r"maximum context length is (\d+) tokens.*?(?:resulted in|requested) (\d+)",
    re.IGNORECASE | re.DOTALL,
)
_N_CTX = re.compile(r"(\d+) tokens?\)? exceeds? the available context size \((\d+)", re.I)
_OVERFLOW_HINTS = (
    "context length",
    "context size",
    "context window",
    "context_length_exceeded",
    "exceed_context_size",
    "n_ctx",
    "prompt is too long",
)


def context_overflow(message: str, code: str | None = None) -> tuple[int, int] | None:
    """Return (prompt tokens, context limit) if ``message`` reports a context overflow.

    Unknown counts are returned as 0; None means the message is not an overflow.
    """
    if m := _KEEP_FIRST.search(message):
        return int(m.group(1)), int(m.group(2))
    if m := _OPENAI_STYLE.search(message):
        return int(m.group(2)), int(m.group(1))
    if m := _N_CTX.search(message):
        return int(m.group(1)), int(m.group(2))
    text = f"{message} {code or ''}".lower()
    if any(hint in text for hint in _OVERFLOW_HINTS) and (
        "exceed" in text or "overflow" in text or "too long" in text or "not enough" in text
    ):
        return 0, 0
    return None


def prompt_too_long(tokens: int, limit: int, estimate: int) -> AnthropicError:
    """The error that makes Claude Code compact: ``prompt is too long: N tokens > M maximum``."""
    tokens = tokens or estimate
    limit = limit or max(tokens - 1, 0)
    if tokens <= limit:
        tokens = limit + 1
    return AnthropicError("invalid_request_error",
                          f"prompt is too long: {tokens} tokens > {limit} maximum",
                          overflow=True)


def from_upstream(
    status: int | None, message: str, code: str | None = None, *, estimate: int = 0,
    name: str = "LM Studio",
) -> AnthropicError:
    """Map an upstream failure (HTTP status, or None for an in-stream error) to an error.

    - a context overflow, whatever its status: 400 ``prompt is too long`` (Claude Code compacts);
    - a previous_response_not_found: 400 (callers retry without the chain before this);
    - a missing model: 404 ``not_found_error``;
    - other 4xx: 400, the upstream's words, since the request content is at fault;
    - 429 / 503 / "busy": 529 ``overloaded_error``;
    - anything else: 502 ``api_error`` (retried with backoff by Claude Code).
    """
    msg = message.strip() or f"{name} returned HTTP {status}"
    overflow = context_overflow(msg, code)
    if overflow is not None:
        return prompt_too_long(*overflow, estimate)
    if code == "model_not_found" or status == 404:
        return AnthropicError("not_found_error", f"{name}: {msg}", 404)
    if status in (429, 503) or code in ("rate_limit_exceeded", "server_busy"):
        return AnthropicError("overloaded_error", f"{name} is busy: {msg}", 529)
    if status is not None and 400 <= status < 500:
        return invalid(f"{name} rejected the request: {msg}")
    return AnthropicError("api_error", f"{name} error: {msg}", 502)


def upstream_message(body: Any) -> tuple[str, str | None]:
    """Extract (message, code) from an upstream error body of any common shape."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            message = err.get("message") or err.get("detail") or ""
            return str(message), (str(err["code"]) if err.get("code") else None)
        if isinstance(err, str):
            return err, None
    if isinstance(body, str):
        return body[:4096], None
    return "", None
