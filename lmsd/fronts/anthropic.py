"""The Anthropic Messages API front: ``POST /v1/messages`` (its part of a turn,
``MessagesFront``; the turn itself is ``turn.py``), token counts, the model list, and a
session's config route. The work is in ``protocol/anthropic``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from ..asgi import Rendered, json_response, render_anthropic
from ..config.sections import AccessSettings, DaemonSettings, FrontSettings, ModelSettings
from ..exchange import Reply
from ..log import event
from ..protocol.anthropic.encode import AnthropicEncoder
from ..protocol.anthropic.items import conversation, system_text
from ..protocol.anthropic.reply import AnthropicReply
from ..protocol.anthropic.request import (
    MessagesRequest,
    validate_messages_request,
)
from ..protocol.anthropic.side import is_side_request
from ..protocol.client_keys import token_matches
from ..protocol.failures import Failure, Forbidden, NotFound, Unauthorized, invalid
from ..protocol.guard import is_loopback_host
from ..protocol.models import (
    claude_entry,
    is_claude_name,
    model_entries,
    models_page,
    openai_entry,
    openai_listing,
    served_contexts,
    served_loaded,
)
from ..protocol.sse import PING, encode_all
from ..protocol.tokens import count_text, estimate_tokens
from ..request_ids import message_id_for
from ..sessions.config import (
    agent_id_of,
    check_session_id,
    parse_session_config,
    session_id_of,
)
from ..sessions.store import SessionStore
from ..upstreams.routed import Routed
from ..upstreams.router import Router
from .client_keys import client_fields, current_client, session_for
from .drain import Drain
from .serve import read_json
from .turn import Asked, Front, Placed, run_turn


class MessagesFront(Front[MessagesRequest]):
    """The Messages API's part of a turn: its validation, Claude Code's session and agent
    headers, side requests, and its reply."""

    name = "anthropic"
    ping = PING

    def __init__(self, settings: FrontSettings) -> None:
        self.settings = settings

    def encode(self, events: list[Any]) -> bytes:
        return encode_all(events)

    async def ask(self, body: Any, path_id: str | None) -> Asked[MessagesRequest]:
        req = validate_messages_request(body)
        strip = self.settings.strip_billing_header
        return Asked(
            req, req.model, conversation(req, strip_billing=strip), req.stream,
            session_for(session_id_of(request.headers, req.metadata, path_id)),
            agent=agent_id_of(request.headers), side=is_side_request(body),
            # counted as the client sent it: the usage it is told starts from this
            estimate=estimate_tokens(req.system, req.messages, req.tools),
            text=lambda: count_text(system_text(req.system, strip_billing=strip),
                                    req.messages, req.tools),
            log={"messages": len(req.messages)})

    def reply(self, asked: Asked[MessagesRequest], placed: Placed) -> Reply:
        req = asked.request
        reply = AnthropicReply(AnthropicEncoder(
            message_id=message_id_for(placed.request_id), model=req.model,
            input_tokens=placed.estimate, stop_sequences=req.stop_sequences,
            capped=asked.capped, upstream_name=placed.server_name,
        ))
        if req.server_tools:
            event("request.server_tools_dropped", level=30, front=self.name,
                  id=reply.message_id, tools=req.server_tools,
                  reason="server tools have no local implementation")
        return reply

    def render(self, failure: Failure) -> Rendered:
        return render_anthropic(failure)


async def _engine_count(settings: FrontSettings, router: Router, store: SessionStore,
                        req: MessagesRequest, session: str) -> int | None:
    """The prompt's tokens by the engine's own tokenizer, where it has one (servers other
    than LM Studio); None otherwise. Asked of the upstream the session is placed on."""
    try:
        route = await Routed(router, store, req.model, session,
                             agent_id_of(request.headers)).place(probe=False)
    except Failure:
        return None
    backend = route.backend
    if not (await backend.dialect()).counts_tokens:
        return None
    return await backend.count_tokens(count_text(
        system_text(req.system, strip_billing=settings.strip_billing_header),
        req.messages, req.tools))


def install(app: QuartTrio, settings: FrontSettings, router: Router, store: SessionStore,
            drain: Drain, *, models: ModelSettings, access: AccessSettings,
            daemon: DaemonSettings) -> MessagesFront:
    """The Anthropic Messages API on ``app``, served from ``router``'s upstreams with
    ``store``'s chains; its streams count themselves in ``drain``. ``models``: what
    /v1/models lists; ``access`` and ``daemon`` (the admin token, where the proxy listens):
    who may set a session's config here."""
    front = MessagesFront(settings)
    model_settings = models  # the name ``models`` is the route's below

    @app.post("/v1/messages")
    @app.post("/session/<sid>/v1/messages")
    async def messages(sid: str | None = None) -> Response:
        return await run_turn(front, settings, router, store, drain,
                              check_session_id(sid) if sid is not None else None)

    @app.post("/v1/messages/count_tokens")
    @app.post("/session/<sid>/v1/messages/count_tokens")
    async def count_tokens(sid: str | None = None) -> Response:
        if sid is not None:
            check_session_id(sid)
        req = validate_messages_request(await read_json(), count_only=True)
        session = session_for(session_id_of(request.headers, req.metadata, sid))
        counted = await _engine_count(settings, router, store, req, session)
        if counted is None:
            counted = estimate_tokens(req.system, req.messages, req.tools)
        return json_response({"input_tokens": counted})

    @app.get("/v1/models")
    @app.get("/session/<sid>/v1/models")
    async def models(sid: str | None = None) -> Response:
        if sid is not None:
            check_session_id(sid)
        # Anthropic's clients page by 20; OpenAI's list has no paging: it gets them all.
        anthropic_client = "anthropic-version" in request.headers
        limit = _int_arg("limit", default=20 if anthropic_client else 1000, lo=1, hi=1000)
        served = await _served_models(model_settings, router)
        return json_response(openai_listing(models_page(
            served.listed, target=served.target, contexts=served.contexts(),
            loaded=served.loaded_flags(), limit=limit,
            after_id=request.args.get("after_id"), before_id=request.args.get("before_id"),
        )))

    @app.get("/v1/models/<path:model_id>")
    @app.get("/session/<sid>/v1/models/<path:model_id>")
    async def model(model_id: str, sid: str | None = None) -> Response:
        if sid is not None:
            check_session_id(sid)
        served = await _served_models(model_settings, router)
        entries = model_entries(served.listed, target=served.target,
                                contexts=served.contexts(), loaded=served.loaded_flags())
        for entry in entries:
            if entry["id"] == model_id:
                return json_response(openai_entry(entry))
        if is_claude_name(model_id):  # dated ids, [1m]: lmsd answers to every Claude name
            return json_response(openai_entry(claude_entry(
                model_id, served.target, served.contexts([model_id]).get(model_id))))
        raise NotFound(f"model: {model_id!r} is not a model lmsd serves (GET /v1/models "
                       f"lists them)")

    @app.route("/session/<sid>/config", methods=["GET", "PUT"])
    async def session_config(sid: str) -> Response:
        if current_client() is None:  # a keyed client may set its own sessions' config
            _require_admin(access, daemon, request.headers.get("Authorization"))
        session = session_for(check_session_id(sid))  # the caller's own session only
        if request.method == "PUT":
            config = parse_session_config(await read_json())
            await store.set_config(session, config)
            event("session.config", session=session, **client_fields(),
                  **config.to_json())
        else:
            config = store.config(session)
        return json_response({"status": "ok", "session": sid, "config": config.to_json()})

    return front


@dataclass
class _Served:
    listed: list[str]  # the upstream's own model ids
    loaded: list[str]  # its loaded instances
    target: str | None  # where unmapped Claude names go
    loaded_contexts: dict[str, int]  # loaded key / instance id -> context length
    settings: ModelSettings

    def contexts(self, ids: Sequence[str] | None = None) -> dict[str, int]:
        """The loaded context behind each id (default: every listed one)."""
        if ids is None:
            ids = [e["id"] for e in model_entries(self.listed, target=None)]
        return served_contexts(ids, contexts=self.loaded_contexts, loaded=self.loaded,
                               mapping=self.settings.model_map, default=self.settings.model)

    def loaded_flags(self) -> dict[str, bool]:
        """Whether the model behind each listed id is loaded now (not: loaded on request)."""
        ids = [e["id"] for e in model_entries(self.listed, target=None)]
        names = [*self.loaded, *(k for k in self.loaded_contexts if k not in self.loaded)]
        return served_loaded(ids, loaded=names, mapping=self.settings.model_map,
                             default=self.settings.model)


async def _served_models(settings: ModelSettings, router: Router) -> _Served:
    try:
        loaded, listed = await router.models()
    except Failure:
        loaded, listed = [], []  # the aliases still let Claude Code start
    return _Served(listed or loaded, loaded, settings.model or (loaded[0] if loaded else None),
                   router.loaded_contexts(), settings)


def _require_admin(access: AccessSettings, daemon: DaemonSettings,
                   authorization: str | None) -> None:
    """An anonymous caller's session config on the proxy port is the admin API's
    business (a keyed client's is its own, in its namespace): with an
    ``admin_token`` set it needs that token (compared in constant time), and off loopback
    without one it is refused (anyone on the network could re-route a session)."""
    token = access.admin_token
    if not token:
        host = daemon.listen.rpartition(":")[0].strip("[]")
        if is_loopback_host(host):
            return
        raise Forbidden(f"/session/ID/config: the proxy listens on {daemon.listen}, beyond "
                        f"loopback; set admin_token (LMSD_ADMIN_TOKEN) and send it as "
                        f"Authorization: Bearer <token>, or use the admin API")
    if not token_matches(token, authorization):
        raise Unauthorized("/session/ID/config needs the admin token: "
                           "Authorization: Bearer <admin_token>")


def _int_arg(name: str, *, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    # ASCII digits only ("²" is a digit to str.isdigit, not to int), and few of them
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not lo <= int(raw) <= hi:
        raise invalid(f"{name}: expected an integer from {lo} to {hi}, got {raw!r}")
    return int(raw)
