"""Refuse, on both ports, the requests a web page could have sent (see protocol/guard.py).

The hooks run before any route reads the body, so a refused request never reaches the
upstream. The allow-lists are read per request: SIGHUP changes them live.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from quart import Response, request, websocket
from quart_trio import QuartTrio

from .config.sections import AccessSettings, DaemonSettings
from .log import event
from .protocol.failures import Failure
from .protocol.guard import Policy, check


def machine_names() -> tuple[str, ...]:
    """This machine's host name, full and short (a LAN client may use either)."""
    name = socket.gethostname().lower().rstrip(".")
    return tuple(sorted({name, name.split(".")[0]} - {""}))


def policy_for(access: AccessSettings, daemon: DaemonSettings, listen_key: str
               ) -> Callable[[], Policy]:
    """The current policy (SIGHUP may change ``access``) of the listener bound by
    ``daemon.<listen_key>``."""
    names = machine_names()

    def current() -> Policy:
        host = getattr(daemon, listen_key).rpartition(":")[0]
        return Policy(host, tuple(access.allowed_hosts), tuple(access.allowed_origins),
                      names)

    return current


def _refused(app: str, error: Failure, answer: Response, path: str, method: str,
             headers: dict[str, str | None]) -> Response:
    event("request.refused", level=30, app=app, method=method, path=path,
          status=answer.status_code, **{k: v[:200] if v else v for k, v in headers.items()},
          error=error.message)
    return answer


def install(app: QuartTrio, policy: Callable[[], Policy],
            respond: Callable[[Failure], Response]) -> None:
    """Check every request and WebSocket handshake before its route runs; ``respond``
    renders a refusal in the app's own error shape."""

    @app.before_request
    async def guard_request() -> Response | None:
        headers = request.headers
        has_body = bool(request.content_length) or "Transfer-Encoding" in headers
        error = check(policy(), headers, method=request.method, has_body=has_body)
        if error is None:
            return None
        return _refused(app.name, error, respond(error), request.path, request.method, {
            "host": headers.get("Host"), "origin": headers.get("Origin"),
            "content_type": headers.get("Content-Type")})

    @app.before_websocket
    async def guard_websocket() -> Response | None:
        headers = websocket.headers
        error = check(policy(), headers, method="GET", websocket=True)
        if error is None:
            return None
        return _refused(app.name, error, respond(error), websocket.path, "WEBSOCKET", {
            "host": headers.get("Host"), "origin": headers.get("Origin")})
