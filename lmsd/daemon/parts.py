"""Which sections of the settings each upstream part gets: the one place (for the supervisor
and the replay) that opens ``Settings`` for a backend and the router."""

from __future__ import annotations

from typing import Any

from ..config import Settings, UpstreamConfig
from ..upstreams.backend import Backend
from ..upstreams.client import Upstream
from ..upstreams.router import Router


def backend_for(settings: Settings, upstream: Upstream, *,
                config: UpstreamConfig | None = None, **kwargs: Any) -> Backend:
    """The backend of ``config`` (else the first upstream) with its sections."""
    return Backend(upstream, config or settings.upstream_list()[0], client=settings.client,
                   models=settings.models, watch=settings.watcher, cache=settings.cache,
                   **kwargs)


def router_for(settings: Settings, backends: list[Backend]) -> Router:
    """The router with its section, and the cache's ``active_window`` (a session that recent
    holds cache where it ran)."""
    return Router(settings.router, backends, active_window=settings.active_window)
