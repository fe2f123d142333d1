"""The proxy's client keys as a hook: who sent each request (see protocol/client_keys.py).

Keys are required when the proxy listens off loopback (unless ``trusted_network``); on
loopback a request without a key is served as always, and one with a configured key is
that client's. The keys are read per request, so SIGHUP rotates them live.
"""

from __future__ import annotations

from quart import g, has_request_context, request
from quart_trio import QuartTrio

from ..config.sections import AccessSettings, DaemonSettings
from ..protocol.client_keys import identify, scoped
from ..protocol.guard import is_loopback_host

#: Anyone may ask these: they say only that lmsd is here (Claude Code probes /api/hello).
OPEN_PATHS = frozenset({"/", "/api/hello"})


def keys_required(access: AccessSettings, daemon: DaemonSettings) -> bool:
    """Whether the proxy, as bound now, serves only requests with a client key."""
    host = daemon.listen.rpartition(":")[0].strip("[]")
    return not is_loopback_host(host) and not access.trusted_network


def current_client() -> str | None:
    """The name of the client this request came from (None: anonymous, on loopback)."""
    return g.get("client") if has_request_context() else None


def session_for(session: str) -> str:
    """The stored id of the session a client called ``session``: in its own namespace."""
    return scoped(current_client(), session)


def install(app: QuartTrio, access: AccessSettings, daemon: DaemonSettings) -> None:
    """Identify every request's client before its route runs; refuse a missing or
    unknown key where keys are required (an Unauthorized, rendered in the client's
    dialect by the app's error handler)."""

    @app.before_request
    async def identify_client() -> None:
        g.client = None
        if request.method in ("GET", "HEAD") and request.path in OPEN_PATHS:
            return
        g.client = identify(access.client_keys, request.headers,
                            required=keys_required(access, daemon))


def client_fields() -> dict[str, str]:
    """``client=NAME`` for an event of a keyed request; nothing for an anonymous one."""
    client = current_client()
    return {"client": client} if client else {}
