"""Anthropic-shaped errors: the Anthropic front's rendering of neutral failures.

lmsd raises the neutral kinds of ``failures.py`` everywhere; ``render`` turns one into the
``AnthropicError`` a Claude Code client sees (an HTTP error body, or an SSE ``error`` event).

Status codes follow what Claude Code 2.1.329 does with each (see README, "Error mapping"):
400 makes it fail fast (and degrade features), 529 gives up after three tries, and
5xx is retried with backoff for about three minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..failures import (
    OVERFLOW,
    BadRequest,
    ClientKeyRefused,
    ContextOverflow,
    Failure,
    Forbidden,
    HTTPRefusal,
    Internal,
    ModelUnavailable,
    NotFound,
    Overloaded,
    ShuttingDown,
    StaleChain,
    TooLarge,
    Unauthorized,
    Unreachable,
    UnsupportedMedia,
    UpstreamAuth,
    UpstreamBroken,
    UpstreamError,
    UpstreamFailure,
    UpstreamRejected,
    UpstreamTimeout,
    as_error,
    classify,
)

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
    lasting: bool = False  # a state retrying will not change (``Failure.lasting``)

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
    """Map an upstream failure (with its HTTP status, None for an in-stream error)."""
    return render(as_error(failure, status, name=name), estimate=estimate)


#: (Anthropic error type, HTTP status) for each neutral kind. Claude Code 2.1.329: 400
#: fails fast, 529 gives up after three tries, 5xx is retried with backoff.
_RENDERING: dict[type[Failure], tuple[str, int]] = {
    BadRequest: ("invalid_request_error", 400),
    TooLarge: ("request_too_large", 413),
    UnsupportedMedia: ("invalid_request_error", 415),
    ClientKeyRefused: ("permission_error", 403),
    Unauthorized: ("authentication_error", 401),
    Forbidden: ("permission_error", 403),
    NotFound: ("not_found_error", 404),
    ShuttingDown: ("overloaded_error", 529),
    Internal: ("api_error", 500),
    Unreachable: ("api_error", 503),
    UpstreamTimeout: ("api_error", 504),
    Overloaded: ("overloaded_error", 529),
    ModelUnavailable: ("api_error", 503),
    UpstreamRejected: ("invalid_request_error", 400),
    UpstreamAuth: ("permission_error", 403),
    UpstreamBroken: ("api_error", 502),
    UpstreamError: ("api_error", 502),
    Failure: ("api_error", 500),
}


def render(error: Failure, *, estimate: int = 0) -> AnthropicError:
    """A neutral failure as Claude Code handles it best.

    - a context overflow: 400 ``prompt is too long: N tokens > M maximum`` (Claude Code
      compacts on exactly that), N from ``estimate`` when the server did not say;
    - a stale chain that reached the client: what the server's answer means on its own;
    - what HTTP itself refused: its status, ``invalid_request_error`` below 500;
    - the rest by kind (``_RENDERING``); the failure's kind stays attached.
    """
    upstream = error.upstream
    if isinstance(error, ContextOverflow):
        rendered = prompt_too_long(error.prompt_tokens, error.context_limit, estimate)
    elif isinstance(error, HTTPRefusal):
        type_ = "invalid_request_error" if error.status < 500 else "api_error"
        rendered = AnthropicError(type_, error.message, error.status)
    else:
        shown = error.shown_as if isinstance(error, StaleChain) else error
        kind = next(k for k in type(shown).__mro__ if k in _RENDERING)
        type_, status = _RENDERING[kind]
        rendered = AnthropicError(type_, shown.message, status)
    rendered.kind = upstream.kind if upstream is not None else (
        OVERFLOW if isinstance(error, ContextOverflow) else "")
    rendered.failure = upstream
    rendered.lasting = error.lasting
    return rendered
