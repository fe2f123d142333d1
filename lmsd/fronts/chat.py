"""The OpenAI Chat Completions front (``POST /v1/chat/completions``), for the openai SDK
and chat-speaking agents: routes only; the work is in ``protocol/chat`` (``front``,
``encode``, ``reply``)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from ..asgi import Rendered
from ..config import Settings
from ..exchange import Exchange
from ..log import event
from ..protocol.chat.encode import PING, ChatEncoder, encode_sse
from ..protocol.chat.front import ChatRequest, validate_chat_request
from ..protocol.chat.reply import ChatReply
from ..protocol.failures import Failure
from ..protocol.openai_errors import render_openai
from ..protocol.tokens import conversation_text, conversation_tokens
from ..request_ids import current as current_request_id
from ..request_ids import new_request_id
from ..sessions.config import check_session_id, is_session_id
from ..sessions.store import SessionStore
from ..upstreams.router import Router
from .client_keys import client_fields, session_for
from .drain import Drain
from .serve import (
    Routed,
    answer,
    new_exchange,
    read_json,
    refuse_if_too_long,
    repair_for,
    upstream_fields,
)

FRONT = "openai_chat"
DEFAULT_SESSION = "default"
#: Where a chat client may name its conversation, first found wins. The openai SDK sends
#: none: then the chain matcher looks for the history among the default session's chains.
SESSION_HEADERS = ("x-session-id", "x-session-affinity")


def render(failure: Failure) -> Rendered:
    """A failure before the stream, as OpenAI clients read it."""
    error = render_openai(failure)
    return Rendered(error.status, error.type, error.message, error.body(), error.headers)


def completion_id(request_id: str) -> str:
    """``chatcmpl-<the request id's hex>``: the id in every chunk finds the request's logs."""
    return "chatcmpl-" + request_id.removeprefix("req_")


def _as_session(value: str) -> str:
    """A client's name for its conversation as a session id: itself when it is one, else
    a stable digest of it (a ``user`` may be an e-mail address)."""
    if is_session_id(value):
        return value
    return "chat-" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def session_of(headers: Any, req: ChatRequest, path_id: str | None) -> str:
    """``x-session-id``, ``x-session-affinity``, ``prompt_cache_key``, ``user``, the
    ``/session/ID/`` path, else the default session."""
    for header in SESSION_HEADERS:
        value = headers.get(header)
        if value and value.strip():
            return _as_session(value.strip())
    if req.session_hints:
        return _as_session(req.session_hints[0])
    return path_id or DEFAULT_SESSION




async def _exchange(settings: Settings, router: Router, store: SessionStore,
                    path_id: str | None) -> Exchange:
    """Validate, map the model, plan the turn (full or chained): the Exchange to run."""
    req = validate_chat_request(await read_json())
    conv = req.conversation
    cap = settings.max_tokens_cap
    capped = bool(cap and conv.max_output_tokens is not None and conv.max_output_tokens > cap)
    if capped:
        conv = replace(conv, max_output_tokens=cap)  # a local model must not run for an hour
    session = session_for(session_of(request.headers, req, path_id))
    config = store.config(session_for(path_id) if path_id else None, session)
    if config.allowed_tools is not None:
        conv = replace(conv, tools=tuple(t for t in conv.tools
                                         if t.name in config.allowed_tools))
    routed = Routed(settings, router, store, req.model, session, override=config.model)
    route = await routed.place()
    model = route.model
    estimate = conversation_tokens(conv)
    await refuse_if_too_long(route.backend, model, estimate, front=FRONT,
                             text=lambda: conversation_text(conv))
    binding = await routed.bind(conv)
    plan = binding.plan
    request_id = current_request_id() or new_request_id()
    reply = ChatReply(ChatEncoder(
        completion_id=completion_id(request_id), model=req.model, created=int(time.time()),
        input_tokens=estimate, include_usage=req.include_usage and req.stream,
        reasoning=settings.chat_reasoning, stop=req.stop, capped=capped,
        upstream_name=route.backend.server_name))
    event("request.start", id=reply.message_id, request_id=request_id, front=FRONT,
          session=session, **client_fields(), agent="main", model=req.model,
          upstream_model=model,
          stream=req.stream, messages=req.messages, estimate_tokens=estimate,
          chain=plan.node.response_id if plan.node else None, chain_miss=plan.miss,
          **upstream_fields(route))
    return new_exchange(routed, binding, reply, front=FRONT, stream=req.stream,
                        repair=repair_for(settings, conv))



def install(app: QuartTrio, settings: Settings, router: Router, store: SessionStore,
            drain: Drain) -> None:
    """``POST /v1/chat/completions`` on ``app``, served from ``router``'s upstreams with
    ``store``'s chains; its streams count themselves in ``drain``."""

    @app.post("/v1/chat/completions")
    @app.post("/session/<sid>/v1/chat/completions")
    async def chat_completions(sid: str | None = None) -> Response:
        exchange = await _exchange(settings, router, store,
                                   check_session_id(sid) if sid is not None else None)
        return await answer(exchange, drain, settings.ping_interval, encode=encode_sse,
                            ping=PING,
                            max_bytes=settings.max_body_bytes)
