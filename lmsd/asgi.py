"""Shared plumbing for lmsd's quart-trio apps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from . import guard, request_ids
from .protocol.anthropic.errors import AnthropicError, render
from .protocol.failures import Failure, HTTPRefusal, NotFound, TooLarge
from .protocol.guard import Policy

NO_SUCH_ENDPOINT = ("no such endpoint; lmsd serves POST /v1/messages, "
                    "POST /v1/messages/count_tokens and GET /v1/models")


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


@dataclass(frozen=True)
class Rendered:
    """An error as one front's client is told: status, its error type and words, the body."""

    status: int
    type: str
    message: str
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    def response(self, headers: dict[str, str] | None = None) -> Response:
        response = Response(_json(self.body), status=self.status,
                            content_type="application/json")
        for key, value in {**self.headers, **(headers or {})}.items():
            response.headers[key] = value
        return response


#: Renders a neutral failure for the client of the route that failed.
Renderer = Callable[[Failure], Rendered]


def anthropic_rendered(error: AnthropicError) -> Rendered:
    headers = {"x-should-retry": "true"} if error.type == "overloaded_error" else (
        {"x-should-retry": "false"} if error.lasting else {})  # Claude Code honours it
    return Rendered(error.status, error.type, error.message, error.body(), headers)


def render_anthropic(failure: Failure) -> Rendered:
    """Anthropic's JSON error body: Claude Code's front, and the admin API, whose clients
    (``lmsd status``, ``lmsd doctor``) read that shape."""
    return anthropic_rendered(render(failure))


def failure_response(failure: Failure, headers: dict[str, str] | None = None) -> Response:
    """A neutral failure as Anthropic's JSON error body (see ``render_anthropic``)."""
    return render_anthropic(failure).response(headers)


def http_failure(error: HTTPException, max_body_bytes: int) -> Failure:
    """What HTTP itself refused (no route, a wrong method, a body too large), as a kind."""
    status = error.code or 500
    if status == 404:
        return NotFound(NO_SUCH_ENDPOINT)
    if status == 413:
        return TooLarge(f"request body is larger than the {max_body_bytes} byte limit")
    return HTTPRefusal(error.description or error.name, status)


def _json(data: Any) -> str:
    import json

    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def json_response(data: Any, status: int = 200) -> Response:
    return Response(_json(data), status=status, content_type="application/json")


def make_app(name: str, *, max_body_bytes: int, render_failure: Renderer = render_anthropic,
             on_error: Callable[[Rendered], None] | None = None,
             policy: Callable[[], Policy] | None = None) -> QuartTrio:
    """A QuartTrio app with rendered errors, no response timeout and a body limit.

    Routes raise neutral failures (``protocol/failures.py``), rendered here by
    ``render_failure`` (Anthropic's shape unless the app says otherwise); an
    ``AnthropicError`` raised is one already rendered (a whole message whose stream
    failed). ``on_error`` sees every error answered (to log and count rejected requests).
    With a ``policy``, requests a web page could have sent are refused before any other
    hook."""
    app = QuartTrio(name)
    if policy is not None:
        guard.install(app, policy, lambda failure: render_failure(failure).response())
    app.config["RESPONSE_TIMEOUT"] = None  # Quart's default 60 s would cut long streams
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    request_ids.install(app)  # first, so that every other hook and error has the id

    def answer(rendered: Rendered) -> Response:
        if on_error is not None:
            on_error(rendered)
        return rendered.response()

    @app.errorhandler(Failure)
    async def failure(error: Failure) -> Response:
        return answer(render_failure(error))

    @app.errorhandler(AnthropicError)
    async def anthropic_error(error: AnthropicError) -> Response:
        return answer(anthropic_rendered(error))

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        return answer(render_failure(http_failure(error, max_body_bytes)))

    app.asgi_app = ShieldASGISend(app.asgi_app)  # type: ignore[method-assign]
    return app
