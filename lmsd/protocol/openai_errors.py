"""Neutral failures as OpenAI clients are told: ``{"error": {message, type, param, code}}``.

Shared by both OpenAI fronts (Responses for Codex, Chat Completions for the rest): one
error shape, two codecs. What each status makes Codex CLI 0.171 do (captured in
``codex-traffic``): a 400 is shown verbatim and never retried, a 404 is retried 5 times, a
429 honours ``retry-after``, a 5xx is retried 30 times over about 24 s and shown only as
"high demand". So the client's own mistakes and a prompt that does not fit are 400s, and
5xx is kept for an upstream that is down or broken (retrying may help).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import failures as f

#: OpenAI's code for a prompt over the context: Codex then says it ran out of room
#: instead of showing raw text (``c171/resp-overflow400oai``).
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"

#: The field a client's bad request names first ("messages.0.content: expected ..."), as
#: OpenAI's ``param``: the SDKs show it beside the message.
_FIELD = re.compile(r"([A-Za-z_][\w.\[\]-]*): ")

#: (HTTP status, error type, code) by kind, most specific first; anything else is 502.
_TABLE: tuple[tuple[type[f.Failure], int, str, str | None], ...] = (
    (f.TooLarge, 413, "invalid_request_error", "request_too_large"),
    (f.UnsupportedMedia, 415, "invalid_request_error", "unsupported_media_type"),
    (f.BadRequest, 400, "invalid_request_error", None),
    (f.Unauthorized, 401, "authentication_error", "invalid_api_key"),
    (f.Forbidden, 403, "permission_error", None),
    (f.ResponseNotFound, 404, "invalid_request_error", None),
    (f.NotFound, 404, "not_found_error", "model_not_found"),
    (f.ShuttingDown, 503, "server_error", "shutting_down"),
    (f.Unreachable, 503, "server_error", "upstream_unreachable"),
    (f.ModelUnavailable, 503, "server_error", "model_not_loaded"),
    (f.UpstreamTimeout, 504, "server_error", "upstream_timeout"),
    (f.Overloaded, 429, "rate_limit_error", "rate_limit_exceeded"),
    (f.UpstreamRejected, 400, "invalid_request_error", None),
    (f.UpstreamAuth, 403, "permission_error", "upstream_auth"),
)


@dataclass(frozen=True)
class OpenAIError:
    status: int
    type: str
    message: str
    code: str | None = None
    param: str | None = None
    lasting: bool = False  # a state retrying will not change (``Failure.lasting``)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}

    @property
    def headers(self) -> dict[str, str]:
        if self.lasting:  # the OpenAI SDKs honour it (Codex CLI: not measured)
            return {"x-should-retry": "false"}
        return {"retry-after": "2"} if self.status == 429 else {}


def render_openai(failure: f.Failure) -> OpenAIError:
    """A neutral failure in OpenAI's words. An overflow is a 400 with
    ``context_length_exceeded``, its message saying N and M when known; a stale chain
    that reached the client is what the server's answer means on its own."""
    if isinstance(failure, f.ContextOverflow):
        n, m = failure.prompt_tokens, failure.context_limit
        said = (f"This model's maximum context length is {m} tokens. However, your "
                f"messages resulted in {n} tokens." if n and m else failure.message)
        return OpenAIError(400, "invalid_request_error", said, CONTEXT_LENGTH_EXCEEDED)
    shown = failure.shown_as if isinstance(failure, f.StaleChain) else failure
    if isinstance(shown, f.HTTPRefusal):
        return OpenAIError(shown.status, "invalid_request_error", shown.message)
    if isinstance(shown, f.UnknownResponse):  # OpenAI's own words, code and param
        return OpenAIError(400, "invalid_request_error", shown.message,
                           "previous_response_not_found", "previous_response_id")
    for kind, status, type_, code in _TABLE:
        if isinstance(shown, kind):
            param = _FIELD.match(shown.message) if isinstance(shown, f.BadRequest) else None
            return OpenAIError(status, type_, shown.message, code,
                               param.group(1) if param else None, shown.lasting)
    internal = type(shown) is f.Failure or shown.kind == "internal"
    return OpenAIError(500 if internal else 502, "server_error", shown.message,
                       "internal_error" if internal else "upstream_error")
