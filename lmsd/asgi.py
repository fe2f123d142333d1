"""Shared plumbing for lmsd's quart-trio apps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from . import guard, request_ids
from .protocol.errors import AnthropicError
from .protocol.guard import Policy

_TYPE_FOR_STATUS = {404: "not_found_error", 405: "invalid_request_error",
                    413: "request_too_large", 408: "invalid_request_error"}


class ShieldASGISend:
    """Shield ``send`` so hypercorn can finish and close connections.

    quart-trio cancels the request scope when hypercorn emits ``http.disconnect`` from
    inside the final ``send``, which otherwise leaves keep-alive connections open forever
    and makes graceful shutdown wait its full timeout.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def shielded_send(message: Any) -> None:
            with trio.CancelScope(shield=True):
                await send(message)

        return await self.app(scope, receive, shielded_send)


def error_response(error: AnthropicError, headers: dict[str, str] | None = None) -> Response:
    response = Response(
        _json(error.body()), status=error.status, content_type="application/json"
    )
    if error.type == "overloaded_error":
        response.headers["x-should-retry"] = "true"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _json(data: Any) -> str:
    import json

    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def json_response(data: Any, status: int = 200) -> Response:
    return Response(_json(data), status=status, content_type="application/json")


def make_app(name: str, *, max_body_bytes: int,
             on_error: Callable[[AnthropicError], None] | None = None,
             policy: Callable[[], Policy] | None = None) -> QuartTrio:
    """A QuartTrio app with Anthropic-shaped errors, no response timeout and a body limit.

    ``on_error`` sees every error answered (to log and count rejected requests). With a
    ``policy``, requests a web page could have sent are refused before any other hook."""
    app = QuartTrio(name)
    if policy is not None:
        guard.install(app, policy, error_response)
    app.config["RESPONSE_TIMEOUT"] = None  # Quart's default 60 s would cut long streams
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    request_ids.install(app)  # first, so that every other hook and error has the id

    def answer(error: AnthropicError) -> Response:
        if on_error is not None:
            on_error(error)
        return error_response(error)

    @app.errorhandler(AnthropicError)
    async def anthropic_error(error: AnthropicError) -> Response:
        return answer(error)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        kind = _TYPE_FOR_STATUS.get(status, "invalid_request_error" if status < 500 else
                                    "api_error")
        message = error.description or error.name
        if status == 413:
            message = f"request body is larger than the {max_body_bytes} byte limit"
        elif status == 404:
            message = "no such endpoint; lmsd serves POST /v1/messages, " \
                "POST /v1/messages/count_tokens and GET /v1/models"
        return answer(AnthropicError(kind, message, status))

    app.asgi_app = ShieldASGISend(app.asgi_app)  # type: ignore[method-assign]
    return app
