"""One id per HTTP request, the same in the ``request-id`` answer header and in events.

Anthropic's API answers every request, errors included, with a ``request-id`` header;
Claude Code shows it with errors. lmsd gives each request ``req_<24 hex>`` and the
message it produces ``msg_<the same hex>``, so any of the three finds the others in the
logs (``request_id=`` on ``request.start``, ``request.end`` and ``request.rejected``).
"""

from __future__ import annotations

import secrets

from quart import Response, g, has_request_context
from quart_trio import QuartTrio

HEADER = "request-id"


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def message_id_for(request_id: str) -> str:
    return "msg_" + request_id.removeprefix("req_")


#: What the answers of each front are called: ``msg_<hex>`` (Anthropic), ``chatcmpl-<hex>``
#: (OpenAI Chat Completions).
ANSWER_PREFIXES = ("msg_", "chatcmpl-")


def request_id_for(message_id: str) -> str:
    for prefix in ANSWER_PREFIXES:
        if message_id.startswith(prefix):
            return "req_" + message_id[len(prefix):]
    return "req_" + message_id


def current() -> str | None:
    """This request's id (None outside a request)."""
    return g.get("request_id") if has_request_context() else None


def install(app: QuartTrio) -> None:
    """Give every request an id and every answer, errors included, the header."""

    @app.before_request
    async def assign() -> None:
        g.request_id = new_request_id()

    @app.after_request
    async def stamp(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id is None:  # refused before ``assign`` ran
            request_id = g.request_id = new_request_id()
        response.headers.setdefault(HEADER, request_id)
        return response
