"""The HTTP client for the upstream (LM Studio, or any OpenAI-compatible server): one
streaming POST whose body each dialect (``dialect.py``) parses, and model listings.

Streams stay on HTTP/1.1 so that closing one really cancels the upstream request
(httpcore sends no RST_STREAM on HTTP/2). Failures are raised as neutral kinds
(``protocol/failures.py``): nothing answers (Unreachable), too slow (UpstreamTimeout), a
cut connection (UpstreamBroken), an HTTP error status (``as_error``, or UpstreamAuth for a
refused key); each front renders them for its client (see README, "Error mapping").
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
import trio

from ..log import event
from ..otel import trace_client
from ..protocol.failures import (
    BadRequest,
    Failure,
    Unreachable,
    UpstreamBroken,
    UpstreamTimeout,
    as_error,
    read_raw_failure,
)
from ..protocol.servers.auth import REFUSED_STATUSES, key_refused_answer
from ..protocol.servers.engines import LM_STUDIO, UNKNOWN, engine_of, one_at_a_time
from ..protocol.servers.lmstudio import OPENAI, V0, V1, LoadedModel, parse_models
from ..protocol.urls import display_url, split_credentials
from .keepalive import ResendOnDeadConnection
from .tap import tap
from .wire import json_body, written_extension

MODELS_CACHE_SECONDS = 2.0
#: How long an idle pooled connection may be reused: well below the servers' own keep-alive
#: timeouts (5 s in Node, so LM Studio, uvicorn, hypercorn and cpp-httplib; 2 s in gunicorn).
#: At httpx's default, 5 s, a request sent on a connection idle for almost 5 s meets the
#: server closing it (``Server disconnected without sending a response``): bench/load.py
#: saw it under load, now and then past the one retry of ``_post_stream``.
KEEPALIVE_SECONDS = 1.0
#: What lmsd reads of an upstream's error body, and passes on of its message: an error is
#: a few hundred bytes; a server (or whatever answers at its address) may send megabytes,
#: which would go to the client, and to the log, whole.
ERROR_BODY_CAP = 64 * 1024
ERROR_MESSAGE_CAP = 2000


async def read_capped(response: httpx.Response, cap: int) -> tuple[bytes, bool]:
    """At most ``cap`` bytes of ``response``'s body, and whether there was more (the rest
    is never read: the connection is closed with the response)."""
    raw = bytearray()
    async for chunk in response.aiter_bytes():
        raw += chunk
        if len(raw) > cap:
            return bytes(raw[:cap]), True
    return bytes(raw), False


#: Errors raised while building or sending a request because of what it holds (a header
#: value with a newline or a non-ASCII character, a URL it cannot form): the request is at
#: fault, not the upstream, so they are a 400 and never count against its health.
UNSENDABLE = (httpx.LocalProtocolError, httpx.InvalidURL, UnicodeEncodeError)


def unsendable(exc: Exception) -> BadRequest:
    """The 400 for a request that could not be put on the wire, naming the cause."""
    reason = str(exc) or type(exc).__name__
    return BadRequest(f"the request could not be sent upstream ({type(exc).__name__}: "
                      f"{reason}); a value it carries into a header or the URL is not "
                      f"allowed there")


class Upstream:
    """One pooled client for the LM Studio server at ``base_url``.

    Credentials in the URL (``http://user:pass@host``) go to the client as basic auth and
    nowhere else: ``base_url`` is the URL without them (and with secret query values
    masked), the one form events, errors and ``/status`` can show.
    """

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 600.0,
        api_key: str = "",
        max_connections: int = 256,
    ) -> None:
        self.name = "LM Studio"  # how errors name it: the engine, once identified
        self.engine: str | None = None  # what answered at base_url (``identify``)
        self.read_timeout = read_timeout
        self.transport = ResendOnDeadConnection(httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=32,
                                keepalive_expiry=KEEPALIVE_SECONDS)))
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect_timeout, read=read_timeout, pool=None),
            transport=self.transport)
        self.base_url = ""  # shown; set_base_url points the client at the real one
        self.set_base_url(base_url)
        trace_client(self.client)  # while tracing is on (under the tap: replay unwraps it)
        tap(self.client)  # records only while a recorded session's request is served
        self._models: tuple[float, list[str], list[str]] | None = None
        self.listed: list[LoadedModel] = []  # the loaded models of the last listing read
        self.known: list[str] = []  # every model id that listing named, loaded or not
        self._tokenizer: str | None = None  # "extras" | "tokenize" | "none", once known
        self._listing: str | None = None  # the models listing that answered last
        self.api_key = ""  # sent, never logged; needed to tell "missing" from "refused"
        self.set_api_key(api_key)
        #: lmsd's own requests streaming from this engine now (``stream``).
        self.busy = 0
        #: Why this engine serves one request at a time (another request interrupts or
        #: waits for the one it serves: llama-cpp-python), once lmsd knows; else None.
        self.one_at_a_time: str | None = None
        self._one_at_a_time = trio.Lock()  # lmsd's streams to such an engine, in turn

    def hold_background(self) -> bool:
        """Must lmsd's own traffic (polls, listings, probes, warm-ups, token counts) wait?
        Yes while one of its requests streams from an engine that serves one at a time:
        llama-cpp-python ends the running answer (its default ``interrupt_requests``)
        when anything else takes its lock, and ``GET /v1/models`` does."""
        return self.busy > 0 and self.one_at_a_time is not None

    def serves_one_at_a_time(self, why: str) -> None:
        """Learned: this engine serves one request at a time (said once)."""
        if self.one_at_a_time is None:
            self.one_at_a_time = why
            event("upstream.one_at_a_time", url=self.base_url, why=why,
                  effect="no polls, listings or warm-ups while lmsd's requests run there")

    def saw_listing(self, data: Any) -> None:
        """An OpenAI ``/v1/models`` answer: the engine it names, and whether that one
        serves one request at a time (llama-cpp-python's)."""
        engine = engine_of(listing=data)
        self.identified(engine)
        if (why := one_at_a_time(engine)) is not None:
            self.serves_one_at_a_time(why)

    def set_api_key(self, api_key: str) -> None:
        """The key sent from now on (at start, and on SIGHUP): it travels in the client's
        default headers, so pooled connections need no change."""
        self.api_key = api_key
        if api_key:
            self.client.headers["Authorization"] = f"Bearer {api_key}"
        else:
            self.client.headers.pop("Authorization", None)

    @property
    def target(self) -> str:
        """The real URL requests go to (no credentials: those travel as basic auth), for
        probes that build an absolute URL. Never show it: show ``base_url``."""
        return str(self.client.base_url).rstrip("/")

    async def aclose(self) -> None:
        await self.client.aclose()

    def set_base_url(self, url: str) -> None:
        """Point at a newly discovered LM Studio (pooled connections are kept per host)."""
        target, credentials = split_credentials(url.rstrip("/"))
        self.client.base_url = httpx.URL(target)
        self.client.auth = httpx.BasicAuth(*credentials) if credentials else None
        self.base_url = display_url(target)
        self._models = None
        self._tokenizer = None
        self._listing = None
        self.engine = None  # another server may answer there

    def identified(self, engine: str) -> None:
        """What answered at ``base_url``, told by what it said (``protocol/servers/engines.py``):
        errors name it from now on. A server that told nothing keeps a better name."""
        if engine != UNKNOWN or self.engine is None:
            self.engine = self.name = engine

    def _unreachable(self, exc: Exception) -> Unreachable:
        reason = str(exc) or type(exc).__name__
        return Unreachable(f"{self.name} is not reachable at {self.base_url}: {reason}")

    @asynccontextmanager
    async def _post_stream(self, path: str, body: dict[str, Any],
                           headers: Mapping[str, str] | None = None
                           ) -> AsyncIterator[httpx.Response]:
        """POST and stream the answer (a dead pooled connection before any answer: sent
        again, ``keepalive.py``)."""
        sent = {"Content-Type": "application/json", **(headers or {})}
        manager = self.client.stream("POST", path, content=json_body(body), headers=sent,
                                     extensions=written_extension())
        try:
            response = await manager.__aenter__()
        except UNSENDABLE as exc:
            raise unsendable(exc) from None
        try:
            yield response
        except BaseException as exc:
            if not await manager.__aexit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            await manager.__aexit__(None, None, None)

    @asynccontextmanager
    async def stream(self, path: str, body: dict[str, Any],
                     headers: Mapping[str, str] | None = None
                     ) -> AsyncIterator[httpx.Response]:
        """Open ``POST path`` and yield the streaming response; each dialect parses it.

        An HTTP error status raises before anything is yielded; transport failures,
        here or while the caller reads the body, raise a Failure.
        """
        async with self._in_turn(), self._stream(path, body, headers) as response:
            yield response

    @asynccontextmanager
    async def _in_turn(self) -> AsyncIterator[None]:
        """On an engine that serves one request at a time, lmsd's own requests wait for
        each other (as ``--interrupt_requests false`` would make the engine do) instead
        of one ending the answer the other streams (llama-cpp-python's default)."""
        if self.one_at_a_time is None:
            yield
            return
        async with self._one_at_a_time:
            yield

    @asynccontextmanager
    async def _stream(self, path: str, body: dict[str, Any],
                      headers: Mapping[str, str] | None = None
                      ) -> AsyncIterator[httpx.Response]:
        self.busy += 1
        try:
            async with self._post_stream(path, body, headers) as response:
                if response.status_code != 200:
                    raw, cut = await read_capped(response, ERROR_BODY_CAP)
                    raise self._http_error(response.status_code, raw, cut=cut)
                yield response
        except httpx.ConnectError as exc:
            raise self._unreachable(exc) from None
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(
                f"{self.name} at {self.base_url} did not answer within "
                f"{self.read_timeout:g} s ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise UpstreamBroken(
                f"the connection to {self.name} failed: {exc or type(exc).__name__}"
            ) from None
        finally:
            self.busy -= 1

    async def post_fresh(self, path: str, body: dict[str, Any]) -> Any:
        """``POST path`` without streaming, on a fresh connection: llama-cpp-python resets
        the one that carried an empty stream, and the pool would hand that one out again.
        Called while a ``stream`` is open, so its transport failures are mapped there."""
        async with httpx.AsyncClient(base_url=self.client.base_url, auth=self.client.auth,
                                     headers=self.client.headers,
                                     timeout=self.client.timeout) as fresh:
            answer = await fresh.post(path, json=body)
        if answer.status_code != 200:
            raise self._http_error(answer.status_code, answer.content)
        return answer.json()

    def _http_error(self, status: int, raw: bytes, *, cut: bool = False) -> Failure:
        """The failure an error answer means; ``cut``: its body was longer than what was
        read (``ERROR_BODY_CAP``). A long message is cut too, and says so."""
        if status in REFUSED_STATUSES:
            return key_refused_answer(status, raw, key=self.api_key, name=self.name)
        failure = read_raw_failure(raw, status)
        if cut or len(failure.message) > ERROR_MESSAGE_CAP:
            failure = replace(failure, message=(
                f"{failure.message[:ERROR_MESSAGE_CAP]}... ({self.name}'s error was cut: "
                f"lmsd reads at most {ERROR_BODY_CAP // 1024} KiB of an error body and "
                f"passes on {ERROR_MESSAGE_CAP} characters of its message)"))
        return as_error(failure, status, name=self.name)

    async def count_tokens(self, text: str) -> int | None:
        """Count with the upstream's own tokenizer, where it has one: llama-cpp-python's
        ``/extras/tokenize/count`` or llama-server's ``/tokenize``. None otherwise."""
        if self.hold_background():
            return None  # asking would interrupt the answer being served: lmsd estimates
        for name, path, body in (("extras", "/extras/tokenize/count", {"input": text}),
                                 ("tokenize", "/tokenize", {"content": text})):
            if self._tokenizer not in (None, name):
                continue
            try:
                answer = await self.client.post(path, json=body, timeout=10.0)
                data = answer.json() if answer.status_code == 200 else None
            except (httpx.HTTPError, ValueError):
                data = None
            count = (data or {}).get("count")
            if count is None and isinstance((data or {}).get("tokens"), list):
                count = len(data["tokens"])
            if isinstance(count, int):
                self._tokenizer = name
                return count
            if self._tokenizer == name:
                return None  # it worked before: a passing failure, not a missing endpoint
        self._tokenizer = "none"
        return None

    async def count_message_tokens(self, body: dict[str, Any],
                                   headers: Mapping[str, str] | None = None) -> int | None:
        """The prompt of a Messages ``body`` counted by the engine's own
        ``/v1/messages/count_tokens`` (llama-server, vLLM): its chat template applied, its
        tools included. None when it cannot say (no endpoint, an error, no number)."""
        try:
            answer = await self.client.post("/v1/messages/count_tokens", json=body,
                                             headers=headers, timeout=10.0)
            data = answer.json() if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        count = data.get("input_tokens") if isinstance(data, dict) else None
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            return count
        return None

    async def models(self) -> tuple[list[str], list[str]]:
        """(loaded model ids, all model ids the upstream lists), cached briefly.

        Raises Unreachable when LM Studio is not reachable. Tries LM Studio's
        ``/api/v1/models``, then ``/api/v0/models``, then the OpenAI-compatible
        ``/v1/models`` (where every listed model counts as loaded).
        """
        now = trio.current_time()
        if self._models and (now - self._models[0] < MODELS_CACHE_SECONDS
                             or self.hold_background()):  # the last listing will do
            return self._models[1], self._models[2]
        loaded, listed = await self._fetch_models()
        self._models = (now, loaded, listed)
        return loaded, listed

    async def _fetch_models(self) -> tuple[list[str], list[str]]:
        """The listing that answered last time first: a server that is not LM Studio
        answers only ``/v1/models``, and two 404s before it on every refresh were three
        round trips where one does (measured on a request's path, issue 15)."""
        order = (V1, V0, OPENAI)
        if self._listing is not None:
            order = (self._listing, *(p for p in order if p != self._listing))
        try:
            for path in order:
                data = await self._get_json(path)
                listing = parse_models(path, data)
                if path == OPENAI:
                    self.saw_listing(data)
                elif listing is not None:
                    self.identified(LM_STUDIO)  # its own listing
                if listing is not None:
                    self._listing = path
                    self.listed, self.known = listing.loaded, listing.known
                    return [m.instance_id for m in listing.loaded], listing.known
            return [], []
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    async def _get_json(self, path: str) -> Any:
        response = await self.client.get(path, timeout=5.0)
        if response.status_code in REFUSED_STATUSES:
            self.identified(engine_of(said=response.text))  # LM Studio names itself
            raise self._http_error(response.status_code, response.content)
        if response.status_code != 200:
            return None
        try:
            return response.json()
        except ValueError:
            return None

