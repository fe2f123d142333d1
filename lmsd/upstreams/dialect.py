"""One interface per upstream kind: the dialect lmsd speaks to the server behind it.

Modelled on httpx's ``_transports/base.py``: one small base that every kind implements,
so the rest of lmsd asks the object (``plan``, ``stream``, ``chains``, ``counts_tokens``)
and never compares names. A replay upstream or a test double is just another subclass.
The request bodies are built by the pure code in ``protocol/`` (``protocol/plan.py`` and
each codec's ``request.py``, ``protocol/anthropic/upstream.py``) and the answers read by
its decoders (``protocol/responses/decode.py``, ``protocol/chat/decode.py``,
``protocol/anthropic/decode.py``) into pivot events;
a dialect only picks which and does the I/O.

``decide`` is the one place the kind is chosen, for the daemon and ``lmsd doctor`` alike.
"""

from __future__ import annotations

import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, ClassVar

import httpx

from ..log import event
from ..protocol.anthropic.decode import MessagesDecoder
from ..protocol.anthropic.upstream import (
    ANTHROPIC_VERSION,
    build_count_request,
    text_conversation,
)
from ..protocol.chain import ChainNode
from ..protocol.chat.decode import ChatDecoder
from ..protocol.failures import Failure
from ..protocol.pivot import Conversation, Event
from ..protocol.plan import TurnPlan, plan_messages_turn, plan_stateless_turn, plan_turn
from ..protocol.responses.decode import ResponsesDecoder, skippable
from ..protocol.sse import SSEDecoder
from .client import Upstream
from .discovery import probe

Batch = list[Event]
#: Pivot events, one batch per chunk as it arrives (never waiting for more).
Batches = AsyncIterator[Batch]
CONFIGURED = "configured (upstream_api)"
UNDECIDED = "decided when the upstream first answers"


class Dialect(ABC):
    """What lmsd needs from one kind of upstream."""

    #: The name ``/status`` (``upstream.api``), the ``upstream.dialect`` event and the
    #: ``upstream_api`` setting use.
    name: ClassVar[str]
    #: What it means, in ``lmsd doctor``'s words.
    summary: ClassVar[str] = ""
    #: How errors name the server behind it.
    server_name: ClassVar[str] = "the upstream server"
    #: Sends only what is new, with ``previous_response_id``.
    chains: ClassVar[bool] = False
    #: The engine may have its own tokenizer worth asking (``Upstream.count_tokens``).
    counts_tokens: ClassVar[bool] = False
    #: Where a turn goes (a re-warm replays the last body there).
    endpoint: ClassVar[str] = ""
    #: The endpoint reads llama-server's ``id_slot`` (the keeper pins a slot with it).
    reads_id_slot: ClassVar[bool] = False

    def __init__(self, why: str = "") -> None:
        self.why = why  # why this kind was chosen, for /status and the logs

    @abstractmethod
    def plan(self, conv: Conversation, *, model: str, nodes: Iterable[ChainNode],
             chaining: bool, session: str | None = None) -> TurnPlan:
        """The bodies to send for one turn, in order (see ``TurnPlan.bodies``);
        ``session`` names the conversation where the upstream kind can carry it, for a
        cluster's router behind it (the headers carry it in any case; LM Studio's
        Responses API has no field it would read)."""

    @abstractmethod
    def stream(self, body: dict[str, Any], *, message_id: str,
               headers: Mapping[str, str] | None = None
               ) -> AbstractAsyncContextManager[Batches]:
        """Send ``body`` (with extra ``headers``: the session key for a cluster's router);
        yield its answer as batches of pivot events.

        An HTTP error status raises a Failure before anything is yielded; a failure
        mid-stream raises it from the iterator.
        """

    async def count_tokens(self, text: str, *, model: str | None = None) -> int | None:
        """``text``'s tokens by the engine's own tokenizer, where ``counts_tokens``."""
        return None


class HTTPDialect(Dialect):
    """A dialect spoken over lmsd's pooled HTTP client (``client.py``)."""

    def __init__(self, upstream: Upstream, why: str = "") -> None:
        super().__init__(why)
        self.upstream = upstream

    async def count_tokens(self, text: str, *, model: str | None = None) -> int | None:
        """The engine's tokenizer endpoint (llama-cpp-python's, llama-server's)."""
        return await self.upstream.count_tokens(text) if self.counts_tokens else None


class ResponsesDialect(HTTPDialect):
    """LM Studio's ``/v1/responses``, chained with ``previous_response_id``."""

    name = "responses"
    summary = "responses, with previous_response_id chaining"
    server_name = "LM Studio"
    chains = True
    endpoint = "/v1/responses"

    def plan(self, conv: Conversation, *, model: str, nodes: Iterable[ChainNode],
             chaining: bool, session: str | None = None) -> TurnPlan:
        return plan_turn(conv, model=model, nodes=nodes, chaining=chaining)

    @asynccontextmanager
    async def stream(self, body: dict[str, Any], *, message_id: str,
                     headers: Mapping[str, str] | None = None) -> AsyncIterator[Batches]:
        limit = body.get("max_output_tokens")
        decoder = ResponsesDecoder(message_id, upstream_name=self.upstream.name,
                                   max_output_tokens=limit if isinstance(limit, int) else None)
        async with self.upstream.stream("/v1/responses", body, headers=headers) as response:
            try:
                yield _responses_events(response, decoder)
            finally:
                if decoder.ignored:  # harmless (LM Studio's own extras): for debugging only
                    event("upstream.ignored_events", level=logging.DEBUG, id=message_id,
                          events=decoder.ignored)


class ChatDialect(HTTPDialect):
    """The portable ``/v1/chat/completions``: stateless, the whole history every turn."""

    name = "chat"
    summary = "chat completions, the full history every turn"
    counts_tokens = True  # llama-cpp-python and llama-server have tokenizer endpoints
    endpoint = "/v1/chat/completions"

    #: A named ``tool_choice`` sent as ``"required"`` with only that tool (llama-server)
    named_as_required: ClassVar[bool] = False

    def plan(self, conv: Conversation, *, model: str, nodes: Iterable[ChainNode],
             chaining: bool, session: str | None = None) -> TurnPlan:
        """``user`` carries the session: what vLLM production-stack and LiteLLM-style
        routers key on."""
        plan = plan_stateless_turn(conv, model=model,
                                   named_as_required=self.named_as_required)
        if session:
            plan.full.setdefault("user", session)
        return plan

    @asynccontextmanager
    async def stream(self, body: dict[str, Any], *, message_id: str,
                     headers: Mapping[str, str] | None = None) -> AsyncIterator[Batches]:
        async with self.upstream.stream(self.endpoint, body, headers=headers) as response:
            yield self._events(response, body, message_id)

    async def _events(self, response: httpx.Response, body: dict[str, Any],
                      message_id: str) -> Batches:
        """The chunks as pivot events. A stream that ends with nothing in it
        (llama-cpp-python's answer to an over-long prompt) is asked again without
        streaming, so the real error surfaces."""
        adapter = ChatDecoder(message_id, upstream_name=self.upstream.name)
        decoder = SSEDecoder()
        async for chunk in response.aiter_raw():
            batch = [e for sse in decoder.feed(chunk) for e in adapter.feed(sse.data)]
            if batch:
                yield batch
        if adapter.empty:
            yield await self._retry_plain(body, adapter)
            return
        if tail := adapter.finish():
            yield tail

    async def _retry_plain(self, body: dict[str, Any], adapter: ChatDecoder) -> Batch:
        plain = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        data = await self.upstream.post_fresh("/v1/chat/completions", plain)
        event("upstream.empty_stream", level=30, url=self.upstream.base_url,
              note="the streamed answer was empty; the plain one was not")
        events = adapter.feed(json.dumps({**data, "choices": [
            {**c, "delta": c.get("message") or {}} for c in data.get("choices") or ()]}))
        return events + adapter.feed("[DONE]")


class LlamaServerDialect(ChatDialect):
    """llama.cpp's ``llama-server``: Chat Completions, but it reads ``tool_choice`` only as
    a string (an object naming a function silently becomes ``auto``), so a named choice
    goes as ``"required"`` with only that tool. Still the ``chat`` kind for settings and
    ``/status``."""

    summary = "chat completions (llama-server), the full history every turn"
    server_name = "llama-server"
    named_as_required = True
    reads_id_slot = True  # its /v1/messages rebuilds the body and drops it


class MessagesDialect(HTTPDialect):
    """An engine's own Anthropic ``/v1/messages`` (llama-server, vLLM, SGLang, Ollama):
    stateless, the whole history every turn; tokens counted by its ``count_tokens``."""

    name = "messages"
    summary = "anthropic messages, the full history every turn"
    counts_tokens = True  # /v1/messages/count_tokens: the template and tools counted too
    endpoint = "/v1/messages"

    def plan(self, conv: Conversation, *, model: str, nodes: Iterable[ChainNode],
             chaining: bool, session: str | None = None) -> TurnPlan:
        return plan_messages_turn(conv, model=model, session=session)

    @asynccontextmanager
    async def stream(self, body: dict[str, Any], *, message_id: str,
                     headers: Mapping[str, str] | None = None) -> AsyncIterator[Batches]:
        decoder = MessagesDecoder(message_id, upstream_name=self.upstream.name)
        sent = {"anthropic-version": ANTHROPIC_VERSION, **(headers or {})}
        async with self.upstream.stream("/v1/messages", body, headers=sent) as response:
            try:
                yield _messages_events(response, decoder)
            finally:
                if decoder.ignored:
                    event("upstream.ignored_events", level=logging.DEBUG, id=message_id,
                          events=decoder.ignored)

    async def count_tokens(self, text: str, *, model: str | None = None) -> int | None:
        """``text`` as one user message, counted by the engine (``model`` defaults to the
        first it has loaded: vLLM counts only for a model it serves)."""
        if model is None:
            try:
                loaded, _ = await self.upstream.models()
            except Failure:
                loaded = []
            model = loaded[0] if loaded else "default"
        body = build_count_request(text_conversation(text), model=model)
        return await self.upstream.count_message_tokens(
            body, headers={"anthropic-version": ANTHROPIC_VERSION})


#: Every kind, by the name the ``upstream_api`` setting uses.
KINDS: dict[str, type[HTTPDialect]] = {
    ResponsesDialect.name: ResponsesDialect, ChatDialect.name: ChatDialect,
    MessagesDialect.name: MessagesDialect}
#: Why ``auto`` picks Responses for LM Studio although it serves /v1/messages too.
LMSTUDIO_WHY = ("LM Studio answered /lmstudio-greeting: its /v1/responses chains turns "
                "(previous_response_id), so it prefills only what is new")


async def decide(client: httpx.AsyncClient, url: str, setting: str
                 ) -> tuple[type[HTTPDialect], str] | None:
    """(the kind to speak to ``url``, why), or None while nothing answers there (decide
    once it does). ``setting`` is ``upstream_api``: a kind's name, or ``auto``:

    - LM Studio (it answers ``/lmstudio-greeting``) gets Responses: chaining is what
      lmsd does best there, and LM Studio's /v1/messages keeps no state;
    - a server with its own ``/v1/messages`` (llama-server, vLLM, SGLang, Ollama) gets
      Messages: no translation in the engine's way, and its tokenizer counts;
    - anything else (llama-cpp-python's server) the portable Chat Completions.
    """
    if setting != "auto":
        if KINDS[setting] is ChatDialect and await _is_llama_server(client, url):
            return LlamaServerDialect, CONFIGURED
        return KINDS[setting], CONFIGURED
    if await probe(client, url):
        return ResponsesDialect, LMSTUDIO_WHY
    base = url.rstrip("/")
    try:
        listing = await client.get(f"{base}/v1/models", timeout=2.0)
        found = await _speaks_messages(client, base, _first_model(listing))
    except httpx.HTTPError:
        return None
    if found:
        return MessagesDialect, found
    if await _is_llama_server(client, url):
        return LlamaServerDialect, "llama-server answered /props: /v1/chat/completions"
    return ChatDialect, "not LM Studio, no /v1/messages: the portable /v1/chat/completions"


def _first_model(listing: httpx.Response) -> str:
    """The first model ``GET /v1/models`` lists ("default" when it lists none): vLLM
    answers ``count_tokens`` for a model it serves, and 404 for any other."""
    try:
        data = listing.json().get("data") or []
        model = data[0].get("id") if listing.status_code == 200 else None
    except (ValueError, AttributeError, IndexError, TypeError):
        model = None
    return model if isinstance(model, str) and model else "default"


async def _speaks_messages(client: httpx.AsyncClient, base: str, model: str) -> str:
    """Why the server at ``base`` has its own ``/v1/messages``, or "" if it has none.

    First ``count_tokens`` with a one-word prompt: a count (llama-server, vLLM) settles
    it. Then ``/v1/messages`` with an empty body, which no server can generate from: a
    400 or 422 is a route that read the body (Ollama has no ``count_tokens``); 404 and
    405 are no route (llama-cpp-python). Anything else (200 with an error, as LM Studio
    answers any unknown route; 401; 5xx) proves nothing: Chat Completions."""
    headers = {"anthropic-version": ANTHROPIC_VERSION}
    body = build_count_request(text_conversation("ping"), model=model)
    counted = await client.post(f"{base}/v1/messages/count_tokens", json=body,
                                headers=headers, timeout=2.0)
    try:
        count = counted.json().get("input_tokens") if counted.status_code == 200 else None
    except (ValueError, AttributeError):
        count = None
    if isinstance(count, int) and not isinstance(count, bool):
        return "/v1/messages/count_tokens answered: the engine speaks Anthropic Messages"
    empty = await client.post(f"{base}/v1/messages", json={}, headers=headers, timeout=2.0)
    if empty.status_code in (400, 422):
        return (f"/v1/messages answered HTTP {empty.status_code} to an empty request: the "
                "engine speaks Anthropic Messages")
    return ""


async def _is_llama_server(client: httpx.AsyncClient, url: str) -> bool:
    """llama-server answers ``GET /props`` with its settings; other servers have none."""
    try:
        answer = await client.get(f"{url.rstrip('/')}/props", timeout=2.0)
        props = answer.json() if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return False
    return isinstance(props, dict) and "default_generation_settings" in props


async def _responses_events(response: httpx.Response, decoder: ResponsesDecoder) -> Batches:
    sse_decoder = SSEDecoder()
    async for chunk in response.aiter_raw():
        batch = [e for sse in sse_decoder.feed(chunk)
                 if (upstream := _read_event(sse.event, sse.data))
                 for e in decoder.feed(upstream)]
        if batch:
            yield batch
    if tail := decoder.finish():
        yield tail


async def _messages_events(response: httpx.Response, decoder: MessagesDecoder) -> Batches:
    """The stream's events, decoded; a JSON body instead of a stream (a server that ignored
    ``stream: true``, or answered 200 with an error) as the events it stands for."""
    if "text/event-stream" not in response.headers.get("content-type", "text/event-stream"):
        try:
            whole = json.loads(await response.aread())
        except ValueError:
            whole = None
        yield decoder.whole(whole if isinstance(whole, dict) else {"error": (
            f"{decoder.upstream_name} answered with neither an event stream nor JSON")})
        return
    sse_decoder = SSEDecoder()
    async for chunk in response.aiter_raw():
        batch = [e for sse in sse_decoder.feed(chunk)
                 if (upstream := _parse_event(sse.event, sse.data))
                 for e in decoder.feed(upstream, sse.event)]
        if batch:
            yield batch
    if tail := decoder.finish():
        yield tail


#: ``response.created`` as LM Studio and the emulator write it: the decoder takes only the
#: id, and the rest is the whole request again (tools, instructions), before the first token.
_CREATED = re.compile(r'\{"type": ?"response\.created", ?(?:"sequence_number": ?\d+, ?)?'
                      r'"response": ?\{"id": ?"([A-Za-z0-9_.:-]+)"')


def _read_event(name: str | None, data: str) -> dict[str, Any] | None:
    """The event as the decoder needs it: an event it has no use for is not parsed, nor
    is a created event past its id (``skippable``, ``_CREATED``)."""
    if skippable(name):
        return {"type": name}
    if name == "response.created" and (created := _CREATED.match(data)):
        return {"type": name, "response": {"id": created.group(1)}}
    return _parse_event(name, data)


def _parse_event(name: str | None, data: str) -> dict[str, Any] | None:
    if not data or data == "[DONE]":
        return None
    try:
        parsed = json.loads(data)
    except ValueError:
        event("upstream.bad_event", level=30, sse_event=name, data=data[:200])
        return None
    if not isinstance(parsed, dict):
        return None
    if "type" not in parsed and name:
        parsed["type"] = name
    return parsed
