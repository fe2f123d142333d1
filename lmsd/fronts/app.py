"""The proxy app: every front's routes on one port, each failure in its client's shape."""

from __future__ import annotations

import re

from quart import Response
from quart_trio import QuartTrio

from .. import __version__
from ..asgi import Rendered, Renderer, current_path, json_response, make_app, render_anthropic
from ..config import Settings
from ..guard import policy_for
from ..log import event
from ..protocol.failures import Failure
from ..request_ids import current as current_request_id
from ..sessions.recordings import Recorder
from ..sessions.responses import ResponseHistory
from ..sessions.store import SessionStore
from ..upstreams.router import Router
from . import anthropic, chat, client_keys, responses, tap
from .drain import Drain

_SESSION_PREFIX = re.compile(r"^/session/[^/]*(?=/v1/)")


def renderer_by_path(renderers: list[tuple[str, Renderer]]) -> Renderer:
    """Render a failure as the client of the route that failed is told: the first
    ``(path prefix, renderer)`` that matches, ``/session/ID/`` routes included, else
    Anthropic's shape (which lmsd's own routes, ``/`` and ``/session/ID/config``, speak
    too)."""
    def render(failure: Failure) -> Rendered:
        path = _SESSION_PREFIX.sub("", current_path()[0], count=1)
        for prefix, render_front in renderers:
            if path.startswith(prefix):
                return render_front(failure)
        return render_anthropic(failure)
    return render


#: The front a path belongs to, for the events (and so the metrics) of a refused request;
#: any other path is Anthropic's or lmsd's own.
_FRONTS = (("/v1/chat/completions", chat.FRONT), ("/v1/responses", responses.FRONT))


def front_of(path: str) -> str:
    path = _SESSION_PREFIX.sub("", path, count=1)
    return next((front for prefix, front in _FRONTS if path.startswith(prefix)), "anthropic")


def _rejected(rendered: Rendered) -> None:
    """Requests refused before any exchange (bad input, no model) still show up."""
    path, method = current_path()
    event("request.rejected", level=30, request_id=current_request_id(),
          front=front_of(path), method=method, path=path,
          status=rendered.status, error_type=rendered.type, error=rendered.message)


def create_proxy_app(settings: Settings, router: Router, store: SessionStore,
                     drain: Drain, recorder: Recorder | None = None,
                     history: ResponseHistory | None = None) -> QuartTrio:
    """Every front, served from ``router``'s upstreams with ``store``'s chains; their
    streams count themselves in ``drain``; ``recorder`` keeps the exchanges of the
    sessions it records; ``history`` the answers a Responses client may continue."""
    renderers: list[tuple[str, Renderer]] = []
    fronts = settings.fronts  # each part gets its sections of the settings
    app = make_app("lmsd.proxy", max_body_bytes=fronts.max_body_bytes,
                   render_failure=renderer_by_path(renderers), on_error=_rejected,
                   policy=policy_for(settings.access, settings.daemon, "listen"))

    @app.route("/", methods=["GET", "HEAD"])
    async def root() -> Response:
        return json_response({"service": "lmsd", "version": __version__})

    @app.route("/api/hello", methods=["GET", "HEAD"])
    async def hello() -> Response:
        """Claude Code probes this at start: answer it rather than log a warning each time."""
        return json_response({"service": "lmsd", "version": __version__})

    client_keys.install(app, settings.access, settings.daemon)  # after guard and request id
    anthropic.install(app, fronts, router, store, drain, models=settings.naming,
                      access=settings.access, daemon=settings.daemon)
    renderers.append(("/v1/chat/completions",
                      chat.install(app, fronts, router, store, drain).render))
    renderers.append(("/v1/responses", responses.install(
        app, fronts, router, store, drain, history, sessions=settings.sessions).render))
    if recorder is not None:
        app.asgi_app = tap.recorded(  # type: ignore[method-assign]
            app.asgi_app, recorder, front_of, max_body_bytes=fronts.max_body_bytes)
    return app
