"""The OpenAI Responses front (``POST /v1/responses``), for Codex CLI and any Responses
client: routes only; the work is in ``protocol/responses`` (``front``, ``encode``,
``reply``, ``previous``). A generic client's ``previous_response_id`` names an answer
lmsd kept (``sessions/responses.py``): it is expanded to the whole history here."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from ..asgi import Rendered, json_response
from ..config import Settings
from ..exchange import Exchange
from ..log import event
from ..protocol.failures import Failure
from ..protocol.openai_errors import render_openai
from ..protocol.pivot import FunctionTool, ToolChoice
from ..protocol.plan import TurnPlan
from ..protocol.responses.encode import ResponsesEncoder
from ..protocol.responses.front import ResponsesRequest, parse_request
from ..protocol.responses.previous import expanded, input_items, previous_id, stores
from ..protocol.responses.reply import ResponsesReply
from ..protocol.sse import encode_all
from ..protocol.tokens import conversation_text
from ..request_ids import current as current_request_id
from ..request_ids import message_id_for, new_request_id
from ..sessions.config import is_session_id
from ..sessions.responses import ResponseHistory
from ..sessions.store import SessionStore
from ..upstreams.router import Router
from .client_keys import client_fields, current_client, session_for
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

FRONT = "openai_responses"
PING = b": ping\n\n"
DEFAULT_SESSION = "default"


def render(failure: Failure) -> Rendered:
    """A failure before the stream, as OpenAI clients read it (Codex shows a 400 verbatim
    and never retries it)."""
    error = render_openai(failure)
    return Rendered(error.status, error.type, error.message, error.body(), error.headers)


def session_of(headers: Any, req: ResponsesRequest) -> str | None:
    """Codex's thread: the ``session-id`` header, else ``prompt_cache_key`` (None: the
    client named none)."""
    for candidate in (headers.get("session-id"), req.prompt_cache_key):
        if is_session_id(candidate):
            return candidate
    return None



class ToolMemory:
    """The tools each Codex thread last sent, for its compaction requests (``tools: []``):
    sent again with ``tool_choice: "none"``, the prompt prefix stays the one LM Studio
    has cached, and the request chains instead of re-prefilling a nearly full context."""

    def __init__(self, limit: int = 1024) -> None:
        self.limit = limit
        self._tools: dict[tuple[str, str], tuple[FunctionTool, ...]] = {}

    def remember(self, key: tuple[str, str], tools: tuple[FunctionTool, ...]) -> None:
        if len(self._tools) >= self.limit:
            self._tools.clear()
        self._tools[key] = tools

    def get(self, key: tuple[str, str]) -> tuple[FunctionTool, ...]:
        return self._tools.get(key, ())


def _no_tool_calls(plan: TurnPlan) -> None:
    """Planned with the thread's usual tool choice (so the context matches its chain);
    sent with ``none``: a summary, not a call."""
    for body in plan.bodies:
        if body.get("tools"):
            body["tool_choice"] = "none"


async def _exchange(settings: Settings, router: Router, store: SessionStore,
                    memory: ToolMemory, history: ResponseHistory) -> Exchange:
    body = await read_json()
    scope = current_client() or ""
    previous, keep, own = previous_id(body), stores(body), input_items(body)
    followed = None  # the session the previous answer ran in
    if previous is not None:
        items, followed = history.history(scope, previous)
        body = expanded(body, items)
    req = parse_request(body, turn_metadata=request.headers.get("x-codex-turn-metadata"))
    conv = req.conversation
    cap = settings.max_tokens_cap
    if cap and conv.max_output_tokens is not None and conv.max_output_tokens > cap:
        conv = replace(conv, max_output_tokens=cap)  # as the Anthropic front does
    named = session_of(request.headers, req)
    session = session_for(named) if named else followed or session_for(DEFAULT_SESSION)
    config = store.config(None, session)
    routed = Routed(settings, router, store, req.model, session, override=config.model,
                    lenient=True)
    route = await routed.place()
    model = route.model
    await refuse_if_too_long(route.backend, model, req.estimate, front=FRONT,
                             text=lambda: conversation_text(conv))
    if config.allowed_tools is not None:
        conv = replace(conv, tools=tuple(t for t in conv.tools
                                       if t.name in config.allowed_tools))
    compaction = req.request_kind == "compaction" and not conv.tools
    routed.adjust = _no_tool_calls if compaction else None
    if compaction:
        conv = replace(conv, tools=memory.get((session, model)), tool_choice=ToolChoice("auto"))
    elif conv.tools:
        memory.remember((session, model), conv.tools)
    binding = await routed.bind(conv)
    plan = binding.plan
    request_id = current_request_id() or new_request_id()
    message_id = message_id_for(request_id)
    response_id = "resp_" + request_id.removeprefix("req_")
    encoder = ResponsesEncoder(
        response_id=response_id, model=req.model,
        estimate=req.estimate, tools=req.tools, created_at=int(time.time()),
        upstream_name=route.backend.server_name, drop_calls=compaction)

    def kept(response: dict[str, Any]) -> None:
        history.add(scope, response_id, parent=previous, session=session, input=own,
                    response=response)

    reply = ResponsesReply(encoder, message_id=message_id, on_answer=kept if keep else None)
    notes = dict(req.notes)
    if dropped := notes.pop("tools_dropped", None):  # Codex sends web_search every time
        event("request.server_tools_dropped", front=FRONT, id=message_id, tools=dropped,
              reason="hosted tools have no local implementation")
    event("request.start", id=message_id, request_id=request_id, front=FRONT,
          session=session, **client_fields(), agent="main", model=req.model,
          upstream_model=model,
          stream=req.stream, request_kind=req.request_kind, items=len(conv.turns),
          estimate_tokens=req.estimate,
          chain=plan.node.response_id if plan.node else None, chain_miss=plan.miss,
          **({"previous_response_id": previous} if previous else {}),
          **upstream_fields(route), **notes)
    return new_exchange(routed, binding, reply, front=FRONT, stream=req.stream,
                        repair=None if compaction else repair_for(settings, conv))



def install(app: QuartTrio, settings: Settings, router: Router, store: SessionStore,
            drain: Drain, history: ResponseHistory | None = None) -> None:
    """``POST /v1/responses`` and ``GET /v1/responses/{id}`` on ``app``; answers are kept
    in ``history`` (a memory-only one when none is given)."""
    memory = ToolMemory()
    kept = history if history is not None else ResponseHistory(
        None, max_count=settings.session_max_nodes, ttl=settings.session_ttl)

    @app.post("/v1/responses")
    async def responses() -> Response:
        exchange = await _exchange(settings, router, store, memory, kept)
        return await answer(exchange, drain, settings.ping_interval, encode=encode_all,
                            ping=PING,
                            max_bytes=settings.max_body_bytes)

    @app.get("/v1/responses/<response_id>")
    async def retrieve(response_id: str) -> Response:
        """A kept answer, as it was returned (this client's only)."""
        return json_response(kept.response(current_client() or "", response_id))
