"""What an upstream error means, whatever the server and however it was delivered.

Engines word the same failure differently, and the wording is all a client gets: LM Studio
alone has three ways to say "context overflow", and delivers them as HTTP 400, HTTP 500, an
SSE ``error`` event or a ``response.failed``. This module reads an error body (or event) of
any common shape into an :class:`UpstreamFailure` and classifies it:

- ``context_overflow`` with the prompt size N and the limit M when the words carry them
  (the client should compact, never retry);
- ``stale_chain``: the stored response a ``previous_response_id`` named is gone (resend
  the history in full);
- ``chaining_unsupported``: the server has no stored responses at all (llama.cpp);
- ``""``: anything else (a crash, a bad image, a busy server), which is never taken for a
  stale chain.

The wordings themselves, each from a real server, are ``wordings.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .wordings import (
    BUDGET_WORDINGS,
    OVERFLOW_CODES,
    OVERFLOW_HINTS,
    OVERFLOW_VERBS,
    OVERFLOW_WORDINGS,
    STALE_CODES,
    STALE_WORDINGS,
    UNSUPPORTED_WORDINGS,
)

OVERFLOW, STALE, UNSUPPORTED = "context_overflow", "stale_chain", "chaining_unsupported"


# -- the error tree: neutral kinds, raised anywhere, rendered by each front -----------------
#
# Failure                    anything a client may be told
#   BadRequest               the client's request is wrong (``invalid``)
#     TooLarge               its body is over the size limit
#     UnsupportedMedia       its body type or encoding is one lmsd does not read
#   Unauthorized             it lacks lmsd's own credentials (the admin token)
#   Forbidden                a web page could have sent it (a foreign Host or Origin)
#   NotFound                 an unknown model, session or endpoint
#   HTTPRefusal              refused by HTTP itself (a wrong method, a body too slow): the
#                            one kind that carries its status, which is HTTP's, not a front's
#   ContextOverflow          the prompt does not fit (N and M when known): compact
#   ShuttingDown             lmsd is stopping: retry elsewhere or later
#   Internal                 a bug of lmsd's
#   UpstreamError            the server behind lmsd failed
#     Unreachable            nothing answers at its URL
#     UpstreamTimeout        it did not answer in time
#     Overloaded             busy (429, 503): retry later
#     ModelUnavailable       no model is loaded to serve, or its reload failed
#     UpstreamRejected       it refused the request content (other 4xx)
#     UpstreamAuth           it refused lmsd's key (401, 403)
#     StaleChain             the stored response a previous_response_id named is gone
#       ChainingUnsupported  it keeps no stored responses at all
#     UpstreamBroken         a 5xx, a cut connection, a stream that made no sense
#
# Each front maps a kind to what its client handles best (Claude Code: 400 "prompt is too
# long", 529 overloaded; Codex: response.failed; chat clients: an OpenAI error object).


class Failure(Exception):
    """A failure a client may be told of, in neutral terms until a front renders it."""

    kind: ClassVar[str] = "internal"
    #: A state of the upstream that retrying within seconds does not change (nothing
    #: listens, no model loaded, the key refused): clients are told not to retry
    #: (``x-should-retry: false``), so the user reads the reason at once instead of
    #: after minutes of retries (Claude Code shows a 5xx's message only at the end).
    lasting: ClassVar[bool] = False

    def __init__(self, message: str, *, upstream: UpstreamFailure | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.upstream = upstream  # the server's own words, when it came from one


class BadRequest(Failure):
    kind = "bad_request"


def invalid(message: str) -> BadRequest:
    """The failure for a request that breaks a rule; ``message`` names the field."""
    return BadRequest(message)


class TooLarge(BadRequest):
    kind = "too_large"


class UnsupportedMedia(BadRequest):
    kind = "unsupported_media"


class Unauthorized(Failure):
    kind = "unauthorized"


class ClientKeyRefused(Unauthorized):
    """The proxy needs a client key and the request has none, or an unknown one. Claude
    Code retries a 401 for minutes, so its front says 403 (shown at once); OpenAI's
    clients get their 401 ``invalid_api_key``."""

    kind = "client_key_refused"


class Forbidden(Failure):
    kind = "forbidden"


class NotFound(Failure):
    kind = "not_found"


class UnknownResponse(BadRequest):
    """A ``previous_response_id`` lmsd does not hold (never returned, expired, stored with
    ``store: false``, or another client's): OpenAI's 400 ``previous_response_not_found``."""

    kind = "previous_response_not_found"

    def __init__(self, response_id: str) -> None:
        super().__init__(f"Previous response with id '{response_id}' not found.")


class ResponseNotFound(NotFound):
    """``GET /v1/responses/{id}`` of a response lmsd does not hold (a 404, not a model's)."""

    kind = "response_not_found"

    def __init__(self, response_id: str) -> None:
        super().__init__(f"Response with id '{response_id}' not found.")


class HTTPRefusal(Failure):
    """What the HTTP layer refused before any route ran (405, 408...): every front answers
    with the same status, so the kind keeps it."""

    kind = "http"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ContextOverflow(Failure):
    kind = OVERFLOW

    def __init__(self, message: str, *, prompt_tokens: int = 0, context_limit: int = 0,
                 upstream: UpstreamFailure | None = None) -> None:
        super().__init__(message, upstream=upstream)
        self.prompt_tokens = prompt_tokens  # N, 0 when unknown
        self.context_limit = context_limit  # M, 0 when unknown


class ShuttingDown(Failure):
    kind = "shutting_down"


class Internal(Failure):
    kind = "internal"


class UpstreamError(Failure):
    kind = "upstream_error"


class Unreachable(UpstreamError):
    kind = "unreachable"
    lasting = True


class UpstreamTimeout(UpstreamError):
    kind = "timeout"


class Overloaded(UpstreamError):
    kind = "overloaded"


class ModelUnavailable(UpstreamError):
    kind = "model_unavailable"
    lasting = True


class UpstreamRejected(UpstreamError):
    kind = "upstream_rejected"


class UpstreamAuth(UpstreamError):
    kind = "upstream_auth"
    lasting = True


class StaleChain(UpstreamError):
    """Retried in full at once; the client sees it (as ``shown_as``, what the server's
    answer means on its own) only when the full history fails the same way."""

    kind = STALE

    def __init__(self, message: str, *, upstream: UpstreamFailure | None = None,
                 shown_as: Failure | None = None) -> None:
        super().__init__(message, upstream=upstream)
        self.shown_as = shown_as or UpstreamBroken(message, upstream=upstream)


class ChainingUnsupported(StaleChain):
    kind = UNSUPPORTED


class UpstreamBroken(UpstreamError):
    kind = "upstream_broken"

@dataclass(frozen=True)
class UpstreamFailure:
    """An upstream error as words, plus what lmsd makes of them."""

    message: str
    code: str | None = None  # the error's ``code`` (a string), else its ``type``
    prompt_tokens: int = 0  # N, when the server said it
    context_limit: int = 0  # M, when the server said it
    kind: str = ""  # OVERFLOW | STALE | UNSUPPORTED | ""

    @property
    def overflow(self) -> bool:
        return self.kind == OVERFLOW


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _fields(body: Any) -> tuple[str, str | None, Mapping[str, Any]]:
    """(message, code, the mapping that held them) from an error body of any common shape:
    ``{"error": {...}}``, ``{"error": "..."}``, a bare error object, an SSE ``error`` event,
    a plain string."""
    if isinstance(body, Mapping):
        err = body.get("error", body)
        if isinstance(err, Mapping):
            message = err.get("message") or err.get("detail") or ""
            if isinstance(message, Mapping):  # {"message": {"message": ...}} seen in the wild
                message = message.get("message") or ""
            code = err.get("code")
            if not isinstance(code, str) or not code:
                code = err.get("type") if isinstance(err.get("type"), str) else None
                code = None if code in ("error", "") else code
            return str(message), code, err
        if isinstance(err, str):
            return err, None, body
    if isinstance(body, str):
        return body[:4096], None, {}
    return "", None, {}


def _overflow(message: str, code: str | None, n: int, m: int) -> tuple[int, int] | None:
    """(N, M) when the words (or code, or counts) report a context overflow; 0 for unknown."""
    for budget in BUDGET_WORDINGS:
        if found := budget.search(message):
            prompt, window, wanted = (int(found[g]) for g in ("prompt", "window", "output"))
            return prompt, max(window - wanted, 0)
    for pattern, n_group, m_group in OVERFLOW_WORDINGS:
        if found := pattern.search(message):
            return n or int(found.group(n_group)), m or int(found.group(m_group))
    text = f"{message} {code or ''}".lower()
    if (code or "").lower() in OVERFLOW_CODES or (n and m and n > m) or (
            any(h in text for h in OVERFLOW_HINTS) and any(v in text for v in OVERFLOW_VERBS)):
        return n, m
    return None


def classify(message: str, code: str | None = None, *, prompt_tokens: int = 0,
             context_limit: int = 0, status: int | None = None) -> UpstreamFailure:
    """Classify an upstream error's words (and structured counts, when the body had them)."""
    if (counts := _overflow(message, code, prompt_tokens, context_limit)) is not None:
        return UpstreamFailure(message, code, *counts, kind=OVERFLOW)
    kind = ""
    if (code or "").lower() in STALE_CODES or STALE_WORDINGS.search(message):
        kind = STALE
    elif UNSUPPORTED_WORDINGS.search(message):
        kind = UNSUPPORTED
    elif status == 404 and code != "model_not_found" and "model" not in message.lower():
        kind = STALE  # an unknown-id 404 on a chained request
    return UpstreamFailure(message, code, prompt_tokens, context_limit, kind)


def read_failure(body: Any, status: int | None = None) -> UpstreamFailure:
    """Read and classify an error body (HTTP answer, SSE ``error`` event, or the ``error``
    of a ``response.failed``)."""
    message, code, holder = _fields(body)
    return classify(message, code, prompt_tokens=_int(holder.get("n_prompt_tokens")),
                    context_limit=_int(holder.get("n_ctx")), status=status)


def read_raw_failure(raw: bytes, status: int | None = None) -> UpstreamFailure:
    """:func:`read_failure` of an HTTP answer's raw body: JSON if it parses, else text."""
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return read_failure(body, status)


def event_failure(upstream_event: Mapping[str, Any]) -> UpstreamFailure:
    """The failure an ``error`` or ``response.failed`` event reports."""
    source: Any = upstream_event
    if upstream_event.get("type") == "response.failed":
        response = upstream_event.get("response")
        source = response.get("error") if isinstance(response, Mapping) else None
    return read_failure(source)


def as_error(failure: UpstreamFailure, status: int | None = None, *,
             name: str = "the upstream server") -> Failure:
    """The neutral kind of an upstream failure (``status`` None for one reported inside a
    stream), its message in words a user can act on:

    - a context overflow, in any wording and whatever its status: ContextOverflow;
    - a stale chain, or a server that keeps no responses: retried in full before the
      client could see it;
    - a missing model: NotFound;
    - 429, 503 or "busy": Overloaded;
    - 401 / 403: UpstreamAuth; other 4xx: UpstreamRejected (the request content is at
      fault);
    - anything else: UpstreamBroken.
    """
    msg = failure.message.strip() or (f"{name} returned HTTP {status}" if status else
                                      f"{name} reported a failure without a message")
    code = failure.code
    if failure.kind == OVERFLOW:
        return ContextOverflow(msg, prompt_tokens=failure.prompt_tokens,
                               context_limit=failure.context_limit, upstream=failure)
    if failure.kind in (STALE, UNSUPPORTED):
        shown = as_error(UpstreamFailure(failure.message, code), status, name=name)
        chain_error = StaleChain if failure.kind == STALE else ChainingUnsupported
        return chain_error(shown.message, upstream=failure, shown_as=shown)
    if code == "model_not_found" or status == 404:
        return NotFound(f"{name}: {msg}", upstream=failure)
    if status in (429, 503) or code in ("rate_limit_exceeded", "server_busy"):
        return Overloaded(f"{name} is busy: {msg}", upstream=failure)
    if status in (401, 403):
        return UpstreamAuth(f"{name} rejected the request: {msg}", upstream=failure)
    if status is not None and 400 <= status < 500:
        return UpstreamRejected(f"{name} rejected the request: {msg}", upstream=failure)
    return UpstreamBroken(f"{name} error: {msg}", upstream=failure)
