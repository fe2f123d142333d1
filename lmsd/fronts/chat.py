"""The OpenAI Chat Completions front (``POST /v1/chat/completions``), for the openai SDK
and chat-speaking agents: its part of a turn (``ChatFront``; the turn itself is
``turn.py``); the work is in ``protocol/chat`` (``front``, ``encode``, ``reply``)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from ..asgi import Rendered
from ..config.sections import FrontSettings
from ..exchange import Reply
from ..protocol.chat.encode import PING, ChatEncoder, encode_sse
from ..protocol.chat.front import ChatRequest, validate_chat_request
from ..protocol.chat.reply import ChatReply
from ..protocol.failures import Failure
from ..sessions.config import check_session_id, is_session_id
from ..sessions.store import SessionStore
from ..upstreams.router import Router
from .client_keys import session_for
from .drain import Drain
from .serve import render_openai_failure
from .turn import DEFAULT_SESSION, Asked, Front, Placed, run_turn

FRONT = "openai_chat"
#: Where a chat client may name its conversation, first found wins. The openai SDK sends
#: none: then the chain matcher looks for the history among the default session's chains.
SESSION_HEADERS = ("x-session-id", "x-session-affinity")


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



class ChatFront(Front[ChatRequest]):
    """Chat Completions' part of a turn: its validation, where a chat client names its
    conversation, and its reply."""

    name = FRONT
    ping = PING

    def __init__(self, settings: FrontSettings) -> None:
        self.settings = settings

    def encode(self, events: list[Any]) -> bytes:
        return encode_sse(events)

    async def ask(self, body: Any, path_id: str | None) -> Asked[ChatRequest]:
        req = validate_chat_request(body)
        return Asked(req, req.model, req.conversation, req.stream,
                     session_for(session_of(request.headers, req, path_id)),
                     log={"messages": req.messages})

    def reply(self, asked: Asked[ChatRequest], placed: Placed) -> Reply:
        req = asked.request
        return ChatReply(ChatEncoder(
            completion_id=completion_id(placed.request_id), model=req.model,
            created=int(time.time()), input_tokens=placed.estimate,
            include_usage=req.include_usage and req.stream,
            reasoning=self.settings.chat_reasoning, stop=req.stop, capped=asked.capped,
            upstream_name=placed.server_name))

    def render(self, failure: Failure) -> Rendered:
        return render_openai_failure(failure)


def install(app: QuartTrio, settings: FrontSettings, router: Router, store: SessionStore,
            drain: Drain) -> ChatFront:
    """``POST /v1/chat/completions`` on ``app``, served from ``router``'s upstreams with
    ``store``'s chains; its streams count themselves in ``drain``."""
    front = ChatFront(settings)

    @app.post("/v1/chat/completions")
    @app.post("/session/<sid>/v1/chat/completions")
    async def chat_completions(sid: str | None = None) -> Response:
        return await run_turn(front, settings, router, store, drain,
                              check_session_id(sid) if sid is not None else None)

    return front
