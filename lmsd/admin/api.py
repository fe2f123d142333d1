"""The admin API: health, status, sessions, metrics and a live event tail.

Bound to loopback by default; ``/`` is the live dashboard (dashboard.py). Whenever
``admin_token`` is set (and lmsd refuses to bind the admin API beyond loopback without
one), every endpoint requires ``Authorization: Bearer <token>``; the WebSocket and the
dashboard page also accept ``?token=``. Requests a
web page could have sent (a foreign Host, Origin or body type) are refused (guard.py).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from quart import Response, request, websocket
from quart_trio import QuartTrio

from .. import __version__
from ..asgi import failure_response, json_response, make_app
from ..bus import EventBus
from ..config.sections import AccessSettings, DaemonSettings
from ..guard import policy_for
from ..log import event
from ..metrics import CONTENT_TYPE_LATEST, Metrics
from ..protocol.client_keys import client_of, token_matches
from ..protocol.failures import NotFound, Unauthorized, invalid
from ..sessions.config import check_stored_session_id as check_session_id
from ..sessions.config import parse_session_config
from ..sessions.recordings import Recorder
from ..sessions.store import SessionStore
from ..upstreams.router import Readiness
from .dashboard import page


def sessions_json(store: SessionStore, only: str | None = None) -> list[dict[str, Any]]:
    """Sessions by id, most recently used first: each with the fronts its turns came in
    by (``anthropic``, ``openai_responses`` for a Codex thread, ``openai_chat``), its
    per-agent-and-model counters (with ``cached_percent``, the prompt share the engine's
    prefix cache held) and its config."""
    grouped: dict[str, dict[str, Any]] = {}
    for (session, agent, model), stats in store.stats.items():
        if only is not None and session != only:
            continue
        entry = grouped.setdefault(session, {"session": session,
                                             "client": client_of(session), "fronts": [],
                                             "agents": [], "last_used": 0.0})
        entry["agents"].append({"agent": agent, "model": model,
                                "chain_nodes": len(store.nodes((session, agent, model))),
                                **vars(stats), "cached_percent": stats.cached_percent})
        entry["fronts"] += [f for f in stats.fronts if f not in entry["fronts"]]
        entry["last_used"] = max(entry["last_used"], stats.last_used)
    for session in store.configs:
        if only is None or session == only:
            grouped.setdefault(session, {"session": session, "client": client_of(session),
                                         "fronts": [], "agents": [], "last_used": None})
    for entry in grouped.values():
        config = store.configs.get(entry["session"])
        entry["config"] = config.to_json() if config else None
    return sorted(grouped.values(), key=lambda e: e["last_used"] or 0, reverse=True)


#: The most sessions one page of ``GET /sessions?limit=`` may ask for.
MAX_PAGE = 1000


def _whole(name: str, text: str | None, default: int, most: int) -> int:
    if text is None:
        return default
    if not text.isdigit() or not 0 <= int(text) <= most:
        raise invalid(f"{name} must be a whole number from 0 to {most}, got {text[:40]!r}")
    return int(text)


def page_of_sessions(listed: list[dict[str, Any]], args: Any) -> dict[str, Any]:
    """``GET /sessions`` answers every session (what ``lmsd sessions`` reads); with
    ``?q=`` (part of a session id, any case), ``?offset=`` or ``?limit=`` it answers that
    page of them, most recent first, with ``total``, the number matching: the dashboard
    asks for a page, so 3000 sessions do not freeze it."""
    if not any(k in args for k in ("q", "offset", "limit")):
        return {"sessions": listed}
    query = args.get("q", "").strip().lower()
    if len(query) > 200:
        raise invalid("q must be at most 200 characters")
    if query:
        listed = [e for e in listed if query in e["session"].lower()]
    offset = _whole("offset", args.get("offset"), 0, 10**9)
    limit = _whole("limit", args.get("limit"), MAX_PAGE, MAX_PAGE)
    return {"sessions": listed[offset:offset + limit], "total": len(listed),
            "offset": offset, "limit": limit}


def create_admin_app(access: AccessSettings, daemon: DaemonSettings, store: SessionStore,
                     bus: EventBus, metrics: Metrics, *, status: Callable[[], dict[str, Any]],
                     ready: Callable[[], Awaitable[Readiness]],
                     upstreams: Callable[[], list[dict[str, Any]]] = list,
                     models: Callable[[], dict[str, Any]] = lambda: {"models": [],
                                                                     "budgets": []},
                     forget: Callable[[str | None], None] | None = None,
                     recorder: Recorder | None = None) -> QuartTrio:
    """The admin API over ``store``, ``bus`` and ``metrics``; ``/status`` answers with
    ``status()`` (the supervisor's view of every part), ``/readyz`` with ``ready()``,
    ``/upstreams`` with ``upstreams()``, ``/models`` with ``models()`` (what each upstream
    can serve, loaded or not: upstreams/models/view.py); a reset also ``forget``s a
    session's upstream pins; ``recorder`` starts and stops recording a session's
    exchanges. ``access``: the admin token and the guard's lists (SIGHUP changes them);
    ``daemon``: where it listens."""
    app = make_app("lmsd.admin", max_body_bytes=1024 * 1024,
                   policy=policy_for(access, daemon, "admin_listen"))

    @app.before_request
    async def require_token() -> Response | None:
        # A browser cannot send a header when it opens a page: the dashboard (only) takes
        # the token as ?token=, as the WebSocket does.
        query = request.args.get("token") if request.path == "/" else None
        if not token_matches(access.admin_token, request.headers.get("Authorization"), query):
            return failure_response(Unauthorized(
                "the admin API needs Authorization: Bearer <token>"),
                {"WWW-Authenticate": "Bearer"})
        return None

    @app.get("/")
    async def dashboard() -> Response:
        body, headers = page()
        return Response(body, headers=headers)

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok", "version": __version__})

    @app.get("/readyz")
    async def readyz() -> Response:
        answer = await ready()
        if answer.problem is None:
            return json_response({"status": "ready", "upstream": answer.url,
                                  "models": answer.models})
        return json_response({"status": "not ready", "upstream": answer.url,
                              "error": answer.problem}, 503)

    @app.get("/status")
    async def status_route() -> Response:
        return json_response(status())

    @app.get("/upstreams")
    async def upstreams_route() -> Response:
        return json_response({"upstreams": upstreams()})

    @app.get("/models")
    async def models_route() -> Response:
        return json_response(models())

    @app.get("/sessions")
    async def sessions() -> Response:
        return json_response(page_of_sessions(sessions_json(store), request.args))

    @app.get("/sessions/<sid>")
    async def session(sid: str) -> Response:
        found = sessions_json(store, check_session_id(sid))
        if not found:
            raise NotFound(f"no session {sid!r}")
        return json_response(found[0])

    @app.delete("/sessions")
    async def reset_all() -> Response:
        dropped = await store.reset()
        if forget is not None:
            forget(None)
        event("session.reset", session="*", chain_nodes=dropped)
        return json_response({"reset": "all", "chain_nodes": dropped})

    @app.delete("/sessions/<sid>")
    async def reset_one(sid: str) -> Response:
        dropped = await store.reset(check_session_id(sid))
        if forget is not None:
            forget(sid)
        event("session.reset", session=sid, chain_nodes=dropped)
        return json_response({"reset": sid, "chain_nodes": dropped})

    @app.put("/sessions/<sid>/config")
    async def put_config(sid: str) -> Response:
        from ..protocol.anthropic.request import parse_json

        config = parse_session_config(parse_json(await request.get_data(cache=False)))
        await store.set_config(check_session_id(sid), config)
        event("session.config", session=sid, **config.to_json())
        return json_response({"status": "ok", "session": sid, "config": config.to_json()})

    @app.put("/sessions/<sid>/record")
    @app.delete("/sessions/<sid>/record")
    async def record(sid: str) -> Response:
        if recorder is None:
            raise NotFound("recording is not available here")
        start = request.method == "PUT"
        (recorder.start if start else recorder.stop)(check_session_id(sid))
        event("session.record", session=sid, recording=start)
        return json_response({"session": sid, "recording": start,
                              "directory": str(recorder.directory)})

    @app.get("/recordings")
    async def recordings() -> Response:
        if recorder is None:
            raise NotFound("recording is not available here")
        return json_response(recorder.listing())

    @app.get("/metrics")
    async def metrics_route() -> Response:
        return Response(metrics.render(), content_type=CONTENT_TYPE_LATEST)

    @app.websocket("/events")
    async def events() -> None:
        if not token_matches(access.admin_token, websocket.headers.get("Authorization"),
                           websocket.args.get("token")):
            await websocket.close(1008, "the admin API needs a bearer token")
            return
        session = websocket.args.get("session") or None
        types = tuple(t for t in (websocket.args.get("type") or "").split(",") if t)
        replay = websocket.args.get("replay", "0")
        await websocket.accept()
        with bus.subscribe(session=session, types=types,
                                  replay=_count(replay)) as sub:
            await websocket.send(json.dumps({"type": "subscribed", "session": session,
                                             "types": list(types)}))
            while True:
                item = await sub.next()
                await websocket.send(json.dumps(item, ensure_ascii=False, default=str))

    return app


def _count(raw: str) -> int:
    """``?replay=N``: ASCII digits (``"²"`` is a digit to ``str.isdigit``, not to ``int``),
    else none."""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else 0
