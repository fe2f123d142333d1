"""Shared plumbing for lmsd's quart-trio apps."""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import trio
from quart import Response, has_request_context, has_websocket_context, request, websocket
from quart_trio import QuartTrio
from quart_trio.wrappers.request import TrioBody, TrioRequest
from werkzeug.exceptions import HTTPException

from . import guard, request_ids
from .log import event, logger
from .protocol.anthropic.errors import AnthropicError, render
from .protocol.failures import Failure, HTTPRefusal, NotFound, TooLarge
from .protocol.guard import Policy
from .protocol.text import json_utf8

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


#: The scope key of a request's body gate (``BodyGate``).
GATE = "lmsd.body_gate"
#: The scope key of a nursery that lives as long as the request (``BodyGate``): a route
#: may start there what must begin before its answer's headers go out and end with it.
NURSERY = "lmsd.nursery"


class BodyGate:
    """Read no byte of a request body before a route asks for it.

    Quart reads the body in a task of its own, alongside the request's hooks: without the
    gate a request the guard, the token check or the router refuses is read anyway (and,
    where something buffers it, held). Here the first ``receive`` waits until the route
    awaits the body (``GatedBody``): a refused request is answered and its connection
    closed unread, and a body whose Content-Length is over the limit is never read.

    Once the answer is complete, what hypercorn still queues for the app (at most its
    queue's few chunks, then the disconnect) is taken and dropped: hypercorn hands the
    app the disconnect from inside the app's last ``send``, which would wait forever on a
    queue no one reads.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        gate = scope[GATE] = trio.Event()

        async def gated() -> Any:
            await gate.wait()
            return await receive()

        async def drop_the_rest() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        async with trio.open_nursery() as nursery:
            scope[NURSERY] = nursery

            async def sent(message: Any) -> None:
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    nursery.start_soon(drop_the_rest)
                await send(message)

            await self.app(scope, gated, sent)
            nursery.cancel_scope.cancel()


class GatedBody(TrioBody):
    """A body that opens its request's ``BodyGate`` when a route first reads it (unless
    its Content-Length already says it is over the limit: then it is never read)."""

    gate: trio.Event | None = None

    def _open(self) -> None:
        if self.gate is not None and self._must_raise is None:
            self.gate.set()

    def __await__(self) -> Generator[Any, None, Any]:
        self._open()
        return (yield from super().__await__())

    async def __anext__(self) -> bytes:
        self._open()
        return await super().__anext__()


class GatedRequest(TrioRequest):
    body_class = GatedBody

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert isinstance(self.body, GatedBody)
        self.body.gate = (self.scope or {}).get(GATE)


def current_path() -> tuple[str, str]:
    """The path and method of the request (or WebSocket handshake) being served."""
    if has_request_context():
        return request.path, request.method
    if has_websocket_context():
        return websocket.path, "WEBSOCKET"
    return "", ""


ExcInfo = tuple[type, BaseException, TracebackType] | tuple[None, None, None]


def log_exception(app_name: str, exc_info: ExcInfo) -> None:
    """An exception a request caused, as one line: any client can cause one, so the
    traceback (kilobytes each) is only for ``log_level = debug``."""
    error = exc_info[1]
    path, method = current_path()
    event("request.failed", level=logging.ERROR, app=app_name, method=method,
          path=path[:200], request_id=request_ids.current(),
          error=f"{type(error).__name__}: {error}"[:300])
    logger.debug("request.failed traceback", exc_info=exc_info)


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


def _json(data: Any) -> bytes:
    import json

    return json_utf8(json.dumps(data, ensure_ascii=False, separators=(",", ":")))


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
    app.request_class = GatedRequest
    app.log_exception = lambda exc_info: log_exception(name, exc_info)  # type: ignore
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

    app.asgi_app = ShieldASGISend(BodyGate(app.asgi_app))  # type: ignore[method-assign]
    return app
