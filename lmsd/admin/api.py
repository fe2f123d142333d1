"""The admin API: health, status, sessions, metrics and a live event tail.

Bound to loopback by default. Whenever ``admin_token`` is set (and lmsd refuses to bind
the admin API beyond loopback without one), every endpoint requires
``Authorization: Bearer <token>``; the WebSocket also accepts ``?token=``. Requests a
web page could have sent (a foreign Host, Origin or body type) are refused (guard.py).
"""

from __future__ import annotations

import hmac
import json
import os
from typing import Any

import httpx
import trio
from quart import Response, request, websocket
from quart_trio import QuartTrio

from .. import __version__
from ..asgi import error_response, json_response, make_app
from ..config import redacted
from ..guard import policy_for
from ..log import event
from ..metrics import CONTENT_TYPE_LATEST
from ..protocol.errors import AnthropicError
from ..sessions.config import check_session_id, parse_session_config
from ..state import Daemon
from ..upstreams.dialect import UNDECIDED


def _authorized(token: str, header: str | None, query: str | None = None) -> bool:
    if not token:
        return True
    supplied = query or ""
    if header and header.lower().startswith("bearer "):
        supplied = header[7:].strip()
    return hmac.compare_digest(supplied.encode(), token.encode())


def sessions_json(daemon: Daemon, only: str | None = None) -> list[dict[str, Any]]:
    store = daemon.store
    grouped: dict[str, dict[str, Any]] = {}
    for (session, agent, model), stats in store.stats.items():
        if only is not None and session != only:
            continue
        entry = grouped.setdefault(session, {"session": session, "agents": [],
                                             "last_used": 0.0})
        entry["agents"].append({"agent": agent, "model": model,
                                "chain_nodes": len(store.nodes((session, agent, model))),
                                **vars(stats)})
        entry["last_used"] = max(entry["last_used"], stats.last_used)
    for session in store.configs:
        if only is None or session == only:
            grouped.setdefault(session, {"session": session, "agents": [], "last_used": None})
    for entry in grouped.values():
        config = store.configs.get(entry["session"])
        entry["config"] = config.to_json() if config else None
    return sorted(grouped.values(), key=lambda e: e["last_used"] or 0, reverse=True)


def trio_task_count() -> int:
    """Live trio tasks in this process (a leak shows as a count that keeps growing)."""
    count, stack = 0, [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


def status_json(daemon: Daemon) -> dict[str, Any]:
    watcher = daemon.watcher
    dialect = daemon.decided_dialect()
    return {
        "version": __version__,
        "pid": os.getpid(),
        "uptime_s": round(trio.current_time() - daemon.started_at, 1),
        "upstream": {**daemon.discovery, "url": daemon.upstream.base_url,
                     "reachable": watcher.reachable,
                     "refused": watcher.refused,
                     "api": dialect.name if dialect else None,
                     "api_why": dialect.why if dialect else UNDECIDED,
                     "chaining": daemon.settings.chaining and not daemon.chaining_refused},
        "models": [m.to_json() for m in watcher.models.values()],
        "watcher": watcher.to_json(),
        "requests": {**daemon.metrics.totals, "active_streams": daemon.active_streams},
        "store": daemon.store.summary(),
        "event_subscribers": daemon.bus.subscribers,
        "trio_tasks": trio_task_count(),
        "draining": daemon.drain.started.is_set(),
        "settings": redacted(daemon.settings),
    }


def create_admin_app(daemon: Daemon) -> QuartTrio:
    app = make_app("lmsd.admin", max_body_bytes=1024 * 1024,
                   policy=policy_for(daemon.settings, "admin_listen"))
    settings, store = daemon.settings, daemon.store

    @app.before_request
    async def require_token() -> Response | None:
        if not _authorized(settings.admin_token, request.headers.get("Authorization")):
            return error_response(AnthropicError(
                "authentication_error", "the admin API needs Authorization: Bearer <token>",
                401), {"WWW-Authenticate": "Bearer"})
        return None

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok", "version": __version__})

    @app.get("/readyz")
    async def readyz() -> Response:
        url = daemon.upstream.base_url
        try:
            answer = await daemon.upstream.client.get("/v1/models", timeout=2.0)
            if answer.status_code == 200:
                loaded = await daemon.loaded_models()
                if loaded or settings.model:  # a configured model loads on demand (JIT)
                    return json_response({"status": "ready", "upstream": url,
                                          "models": loaded})
                problem = daemon.no_model_message()
            else:
                problem = f"LM Studio answered HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            problem = f"LM Studio is not reachable at {url}: {exc or type(exc).__name__}"
        except AnthropicError as exc:
            problem = exc.message
        return json_response({"status": "not ready", "upstream": url, "error": problem}, 503)

    @app.get("/status")
    async def status() -> Response:
        return json_response(status_json(daemon))

    @app.get("/sessions")
    async def sessions() -> Response:
        return json_response({"sessions": sessions_json(daemon)})

    @app.get("/sessions/<sid>")
    async def session(sid: str) -> Response:
        found = sessions_json(daemon, check_session_id(sid))
        if not found:
            raise AnthropicError("not_found_error", f"no session {sid!r}", 404)
        return json_response(found[0])

    @app.delete("/sessions")
    async def reset_all() -> Response:
        dropped = await store.reset()
        event("session.reset", session="*", chain_nodes=dropped)
        return json_response({"reset": "all", "chain_nodes": dropped})

    @app.delete("/sessions/<sid>")
    async def reset_one(sid: str) -> Response:
        dropped = await store.reset(check_session_id(sid))
        event("session.reset", session=sid, chain_nodes=dropped)
        return json_response({"reset": sid, "chain_nodes": dropped})

    @app.put("/sessions/<sid>/config")
    async def put_config(sid: str) -> Response:
        from ..protocol.anthropic.request import parse_json

        config = parse_session_config(parse_json(await request.get_data(cache=False)))
        await store.set_config(check_session_id(sid), config)
        event("session.config", session=sid, **config.to_json())
        return json_response({"status": "ok", "session": sid, "config": config.to_json()})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(daemon.metrics.render(), content_type=CONTENT_TYPE_LATEST)

    @app.websocket("/events")
    async def events() -> None:
        if not _authorized(settings.admin_token, websocket.headers.get("Authorization"),
                           websocket.args.get("token")):
            await websocket.close(1008, "the admin API needs a bearer token")
            return
        session = websocket.args.get("session") or None
        types = tuple(t for t in (websocket.args.get("type") or "").split(",") if t)
        replay = websocket.args.get("replay", "0")
        await websocket.accept()
        with daemon.bus.subscribe(session=session, types=types,
                                  replay=int(replay) if replay.isdigit() else 0) as sub:
            await websocket.send(json.dumps({"type": "subscribed", "session": session,
                                             "types": list(types)}))
            while True:
                item = await sub.next()
                await websocket.send(json.dumps(item, ensure_ascii=False, default=str))

    return app
