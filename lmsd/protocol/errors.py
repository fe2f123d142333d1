"""Anthropic-shaped errors, and the mapping from upstream failures to them.

Status codes follow what Claude Code 2.1.329 does with each (see README, "Error mapping"):
400 makes it fail fast (and degrade features), 529 gives up after three tries, and
5xx is retried with backoff for about three minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .failures import OVERFLOW, UpstreamFailure, classify

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
    kind: str = ""  # what the upstream failure means (protocol.failures), "" for other errors
    failure: UpstreamFailure | None = None  # the upstream's own words, when it came from one

    def __post_init__(self) -> None:
        if not self.status:
            self.status = STATUS_FOR_TYPE.get(self.type, 500)
        super().__init__(self.message)

    @property
    def overflow(self) -> bool:
        """A context overflow: the prompt, not the chain, is at fault."""
        return self.kind == OVERFLOW

    def body(self) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self.type, "message": self.message}}


def invalid(message: str) -> AnthropicError:
    return AnthropicError("invalid_request_error", message)


def prompt_too_long(tokens: int, limit: int, estimate: int) -> AnthropicError:
    """The error that makes Claude Code compact: ``prompt is too long: N tokens > M maximum``."""
    tokens = tokens or estimate
    limit = limit or max(tokens - 1, 0)
    if tokens <= limit:
        tokens = limit + 1
    return AnthropicError("invalid_request_error",
                          f"prompt is too long: {tokens} tokens > {limit} maximum",
                          kind=OVERFLOW)


def from_upstream(status: int | None, message: str, code: str | None = None, *,
                  estimate: int = 0, name: str = "LM Studio") -> AnthropicError:
    """:func:`from_failure` for an error known only by its words and code."""
    return from_failure(classify(message, code, status=status), status, estimate=estimate,
                        name=name)


def from_failure(failure: UpstreamFailure, status: int | None = None, *, estimate: int = 0,
                 name: str = "LM Studio") -> AnthropicError:
    """Map an upstream failure (with its HTTP status, None for an in-stream error).

    - a context overflow, in any wording and whatever its status: 400 ``prompt is too
      long: N tokens > M maximum`` (Claude Code compacts on exactly that);
    - otherwise by status, with the failure's kind attached: a stale chain or a refused
      ``previous_response_id`` on a chained turn is retried in full before the client
      could see it;
    - a missing model: 404 ``not_found_error``;
    - other 4xx: 400, the upstream's words, since the request content is at fault;
    - 429 / 503 / "busy": 529 ``overloaded_error``;
    - anything else: 502 ``api_error`` (retried with backoff by Claude Code).
    """
    msg = failure.message.strip() or (f"{name} returned HTTP {status}" if status else
                                      f"{name} reported a failure without a message")
    code = failure.code
    if failure.kind == OVERFLOW:
        error = prompt_too_long(failure.prompt_tokens, failure.context_limit, estimate)
    elif code == "model_not_found" or status == 404:
        error = AnthropicError("not_found_error", f"{name}: {msg}", 404)
    elif status in (429, 503) or code in ("rate_limit_exceeded", "server_busy"):
        error = AnthropicError("overloaded_error", f"{name} is busy: {msg}", 529)
    elif status is not None and 400 <= status < 500:
        error = invalid(f"{name} rejected the request: {msg}")
    else:
        error = AnthropicError("api_error", f"{name} error: {msg}", 502)
    error.kind, error.failure = failure.kind, failure  # a stale chain is retried in full
    return error
