"""The admin API (this release: health only)."""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from . import __version__
from .asgi import json_response, make_app
from .config import Settings
from .upstream import Upstream


def create_admin_app(settings: Settings, upstream: Upstream) -> QuartTrio:
    app = make_app("lmsd.admin", max_body_bytes=1024 * 1024)

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok", "version": __version__})

    return app
