"""The OpenAI Responses front (``POST /v1/responses``), for Codex CLI and any Responses
client: its part of a turn (``ResponsesFront``; the turn itself is ``turn.py``); the
work is in ``protocol/responses`` (``front``, ``encode``, ``reply``, ``previous``). A
generic client's ``previous_response_id`` names an answer lmsd kept
(``sessions/responses.py``): it is expanded to the whole history here."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from ..asgi import Rendered, json_response
from ..config.sections import FrontSettings, SessionSettings
from ..exchange import Reply
from ..log import event
from ..protocol.failures import Failure
from ..protocol.pivot import FunctionTool, ToolChoice
from ..protocol.plan import TurnPlan
from ..protocol.responses.encode import ResponsesEncoder
from ..protocol.responses.front import ResponsesRequest, parse_request
from ..protocol.responses.previous import expanded, input_items, previous_id, stores
from ..protocol.responses.reply import ResponsesReply
from ..protocol.sse import encode_all
from ..request_ids import message_id_for
from ..sessions.config import is_session_id
from ..sessions.responses import ResponseHistory
from ..sessions.store import SessionStore
from ..upstreams.router import Router
from .client_keys import current_client, session_for
from .drain import Drain
from .serve import render_openai_failure
from .turn import DEFAULT_SESSION, Asked, Front, Placed, run_turn

FRONT = "openai_responses"
PING = b": ping\n\n"


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


@dataclass
class _Codex:
    """A Responses request, with what its turn needs beyond the pivot."""

    req: ResponsesRequest
    scope: str  # the client whose answers ``previous_response_id`` may name
    previous: str | None  # the answer it continues
    keep: bool  # ``store``: keep this answer for the next ``previous_response_id``
    own: list[Any]  # its own input items (kept with the answer)
    compaction: bool = False  # a compaction request, sent with the thread's tools


class ResponsesFront(Front[_Codex]):
    """The Responses API's part of a turn: a ``previous_response_id`` expanded to the
    whole history, Codex's thread as the session, compaction kept on the chain, and its
    reply (which keeps the answer where the client asked)."""

    name = FRONT
    ping = PING

    def __init__(self, history: ResponseHistory) -> None:
        self.history = history
        self.memory = ToolMemory()

    def encode(self, events: list[Any]) -> bytes:
        return encode_all(events)

    async def ask(self, body: Any, path_id: str | None) -> Asked[_Codex]:
        scope = current_client() or ""
        previous, keep, own = previous_id(body), stores(body), input_items(body)
        followed = None  # the session the previous answer ran in
        if previous is not None:
            items, followed = self.history.history(scope, previous)
            body = expanded(body, items)
        req = parse_request(body, turn_metadata=request.headers.get("x-codex-turn-metadata"))
        named = session_of(request.headers, req)
        session = session_for(named) if named else followed or session_for(DEFAULT_SESSION)
        log: dict[str, Any] = {"request_kind": req.request_kind,
                               "items": len(req.conversation.turns)}
        if previous:
            log["previous_response_id"] = previous
        return Asked(_Codex(req, scope, previous, keep, own), req.model, req.conversation,
                     req.stream, session, lenient=True, estimate=req.estimate,
                     log={**log, **{k: v for k, v in req.notes.items()
                                    if k != "tools_dropped"}})

    def shape(self, asked: Asked[_Codex], model: str) -> Callable[[TurnPlan], None] | None:
        """A compaction request (``tools: []``) is sent with the thread's last tools and
        ``tool_choice: "none"``; any other one's tools are remembered for it."""
        conv, key = asked.conv, (asked.session, model)
        codex = asked.request
        codex.compaction = codex.req.request_kind == "compaction" and not conv.tools
        if codex.compaction:
            asked.conv = replace(conv, tools=self.memory.get(key),
                                 tool_choice=ToolChoice("auto"))
            asked.repair = False
            return _no_tool_calls
        if conv.tools:
            self.memory.remember(key, conv.tools)
        return None

    def reply(self, asked: Asked[_Codex], placed: Placed) -> Reply:
        codex, session, history = asked.request, asked.session, self.history
        req = codex.req
        message_id = message_id_for(placed.request_id)
        response_id = "resp_" + placed.request_id.removeprefix("req_")
        encoder = ResponsesEncoder(
            response_id=response_id, model=req.model,
            estimate=req.estimate, tools=req.tools, created_at=int(time.time()),
            upstream_name=placed.server_name, drop_calls=codex.compaction)

        def kept(response: dict[str, Any]) -> None:
            history.add(codex.scope, response_id, parent=codex.previous, session=session,
                        input=codex.own, response=response)

        if dropped := req.notes.get("tools_dropped"):  # Codex sends web_search every time
            event("request.server_tools_dropped", front=FRONT, id=message_id, tools=dropped,
                  reason="hosted tools have no local implementation")
        return ResponsesReply(encoder, message_id=message_id,
                              on_answer=kept if codex.keep else None)

    def render(self, failure: Failure) -> Rendered:
        return render_openai_failure(failure)


def install(app: QuartTrio, settings: FrontSettings, router: Router, store: SessionStore,
            drain: Drain, history: ResponseHistory | None = None, *,
            sessions: SessionSettings) -> ResponsesFront:
    """``POST /v1/responses`` and ``GET /v1/responses/{id}`` on ``app``; answers are kept
    in ``history`` (a memory-only one, bounded as the store is, when none is given)."""
    kept = history if history is not None else ResponseHistory(
        None, max_count=sessions.session_max_nodes, ttl=sessions.session_ttl)
    front = ResponsesFront(kept)

    @app.post("/v1/responses")
    async def responses() -> Response:
        return await run_turn(front, settings, router, store, drain)

    @app.get("/v1/responses/<response_id>")
    async def retrieve(response_id: str) -> Response:
        """A kept answer, as it was returned (this client's only)."""
        return json_response(kept.response(current_client() or "", response_id))

    return front
