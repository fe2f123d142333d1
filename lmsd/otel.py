"""OpenTelemetry traces of lmsd's turns: one SERVER span per client request, one CLIENT span
per upstream request under it, named and attributed after the GenAI semantic conventions
(``chat {model}``, ``gen_ai.*``) with lmsd's own figures as ``lmsd.*``.

Off unless an OTLP endpoint is configured the standard way (``OTEL_EXPORTER_OTLP_ENDPOINT``
or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; ``OTEL_SDK_DISABLED=true`` or
``OTEL_TRACES_EXPORTER=none`` turn it off): then nothing is imported or started, and each
hook costs a function call. On, the SDK's ``BatchSpanProcessor`` exports from its own thread
(the daemon's ``aclose`` flushes it), and every other ``OTEL_*`` variable (service name,
headers, sampler, propagators) works as the SDK reads it.

A ``traceparent`` the client sends is continued; each upstream request carries one naming
its CLIENT span (``TracedTransport``, under the recording tap), so a gateway's and an
engine's own spans join the same trace. The SDK is the optional extra ``otel``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

import httpx

from .log import event
from .protocol.client_keys import SEPARATOR

#: Response headers that name the worker a gateway sent the request to (SMG's).
WORKER_HEADERS = ("x-smg-routed-worker-id",)
#: ``request.end``'s fields that become span attributes: field -> attribute.
END_ATTRIBUTES = {
    "model": "gen_ai.request.model",
    "upstream_model": "gen_ai.response.model",
    "input_tokens": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
    "cached_tokens": "gen_ai.usage.cache_read.input_tokens",
    "stream": "gen_ai.request.stream",
    "request_id": "lmsd.request_id",
    "front": "lmsd.front",
    "session": "lmsd.session",
    "client": "lmsd.client",
    "agent": "lmsd.agent",
    "upstream": "lmsd.upstream",
    "outcome": "lmsd.outcome",
    "chained": "lmsd.chained",
    "prefilled_tokens": "lmsd.prefilled_tokens",
    "prefill_ms": "lmsd.prefill_ms",
    "ttft_ms": "lmsd.ttft_ms",
    "upstream_ms": "lmsd.upstream_first_byte_ms",
    "duration_ms": "lmsd.duration_ms",
    "failover_from": "lmsd.failover.from",
    "error_type": "error.type",
}

_tracer: Any = None  # the SDK's tracer while tracing is on; None: off
#: The upstream request being made in this task, if traced (``RequestTrace.call``).
_call: ContextVar[_Call | None] = ContextVar("lmsd_otel_call", default=None)
_OFF: AbstractContextManager[None] = nullcontext()


def wanted(env: Mapping[str, str] = os.environ) -> bool:
    """Does the standard configuration ask for traces?"""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" or \
            env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or
                env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip())


def enabled() -> bool:
    return _tracer is not None


class Tracing:
    """Tracing while it is on: the SDK's provider, owned by the daemon (``shutdown``)."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider

    def shutdown(self) -> None:
        """Export what is queued and stop the export thread (blocking: run it in a
        thread). Tracing is off from here on."""
        global _tracer
        _tracer = None
        self.provider.shutdown()


def setup(env: Mapping[str, str] = os.environ) -> Tracing | None:
    """Start tracing if the environment asks for it (``wanted``); None otherwise, or when
    the ``otel`` extra is not installed (said once, as ``tracing.unavailable``)."""
    global _tracer
    if not wanted(env):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        event("tracing.unavailable", level=30, error=str(exc),
              action="install lmsd[otel] for traces; serving without them")
        return None
    from . import __version__
    resource = Resource.create({"service.name": "lmsd", "service.version": __version__}
                               if "OTEL_SERVICE_NAME" not in env else {})
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter()  # its endpoint, headers and timeout from OTEL_*
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _tracer = provider.get_tracer("lmsd", __version__)
    event("tracing.on", endpoint=getattr(exporter, "_endpoint", None),
          service=provider.resource.attributes.get("service.name"))
    return Tracing(provider)


def start_request(headers: Mapping[str, str], *, front: str) -> RequestTrace | None:
    """A client request's SERVER span, continuing the ``traceparent`` in ``headers``;
    None while tracing is off (the only cost then is this call)."""
    if _tracer is None:
        return None
    from opentelemetry import propagate, trace
    parent = propagate.extract({k.lower(): v for k, v in headers.items()})
    span = _tracer.start_span("chat", context=parent, kind=trace.SpanKind.SERVER,
                              attributes={"gen_ai.operation.name": "chat",
                                          "lmsd.front": front})
    return RequestTrace(_tracer, span)


def call(request: RequestTrace | None, *, upstream: str, model: str | None,
         engine: str | None) -> AbstractContextManager[Any]:
    """Around one upstream request of ``request``'s: its CLIENT span (none when off)."""
    return _OFF if request is None else request.call(upstream, model, engine)


def note(request: RequestTrace | None, what: str, **attributes: Any) -> None:
    """A retry or a failover of ``request``'s (a span event, and its cause as attribute)."""
    if request is not None:
        request.note(what, attributes)


class RequestTrace:
    """One client request's span, ended with what ``request.end`` says (``end``)."""

    def __init__(self, tracer: Any, span: Any) -> None:
        self.tracer, self.span = tracer, span  # its own tracer: it outlives a shutdown
        self.ended = False

    def placed(self, model: str, upstream_model: str, session: str, agent: str) -> None:
        """The turn is placed: the span's name and who asked."""
        self.span.update_name(f"chat {model}")
        raw = session.partition(SEPARATOR)[2] or session  # without the client's namespace
        self.span.set_attributes({
            "gen_ai.request.model": model, "gen_ai.response.model": upstream_model,
            "gen_ai.conversation.id": raw, "session.id": raw,  # Claude Code's own key
            "gen_ai.agent.id": agent, "lmsd.session": session, "lmsd.agent": agent})

    @contextmanager
    def call(self, upstream: str, model: str | None, engine: str | None) -> Iterator[None]:
        from opentelemetry import trace
        span = self.tracer.start_span(
            f"chat {model}" if model else "chat", kind=trace.SpanKind.CLIENT,
            context=trace.set_span_in_context(self.span),
            attributes={"gen_ai.operation.name": "chat", "lmsd.upstream": upstream,
                        **({"gen_ai.request.model": model} if model else {}),
                        **({"gen_ai.provider.name": engine} if engine else {})})
        token = _call.set(_Call(span, self))
        try:
            yield
        except BaseException as exc:
            span.set_attribute("error.type", getattr(exc, "kind", type(exc).__name__))
            span.set_status(trace.StatusCode.ERROR, str(exc)[:500])
            raise
        finally:
            _call.reset(token)
            span.end()

    def note(self, what: str, attributes: dict[str, Any]) -> None:
        self.span.add_event(f"lmsd.{what}", {k: v for k, v in attributes.items()
                                             if v is not None})
        if (cause := attributes.get("cause")) is not None:
            self.span.set_attribute(f"lmsd.{what}.cause", cause)

    def end(self, fields: Mapping[str, Any], *, repairs: list[str] | None = None,
            failed: bool = False) -> None:
        """End the span with ``request.end``'s ``fields`` (once)."""
        if self.ended:
            return
        self.ended = True
        attributes = {name: fields[key] for key, name in END_ATTRIBUTES.items()
                      if fields.get(key) is not None}
        if (ttft := fields.get("ttft_ms")) is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = ttft / 1000
        if stop := fields.get("stop_reason"):
            attributes["gen_ai.response.finish_reasons"] = [str(stop)]
        if repairs:
            attributes["lmsd.repair.formats"] = repairs
        self.span.set_attributes(attributes)
        if failed:
            from opentelemetry import trace
            self.span.set_status(trace.StatusCode.ERROR, str(fields.get("error", ""))[:500])
        self.span.end()

    def refused(self, failure: BaseException) -> None:
        """The request ended before its turn began (a 4xx, a prompt too long)."""
        kind = getattr(failure, "kind", type(failure).__name__)
        self.end({"outcome": "refused", "error_type": kind, "error": str(failure)},
                 failed=True)


class _Call:
    """One upstream request's span and the request it belongs to."""

    def __init__(self, span: Any, request: RequestTrace) -> None:
        self.span, self.request = span, request

    def answered(self, response: httpx.Response) -> None:
        self.span.set_attribute("http.response.status_code", response.status_code)
        for header in WORKER_HEADERS:
            if worker := response.headers.get(header):
                self.span.set_attribute("lmsd.worker", worker)
                self.request.span.set_attribute("lmsd.worker", worker)


class TracedTransport(httpx.AsyncBaseTransport):
    """An upstream client's transport: a traced upstream request carries its span's
    ``traceparent``, and its span learns the status and the gateway's worker."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        current = _call.get()
        if current is not None:
            from opentelemetry import propagate, trace
            propagate.inject(request.headers,
                             context=trace.set_span_in_context(current.span))
        response = await self.inner.handle_async_request(request)
        if current is not None:
            current.answered(response)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def trace_client(client: httpx.AsyncClient) -> None:
    """Trace ``client``'s upstream requests (only while tracing is on: off, the client
    is left as it is)."""
    if _tracer is not None and not isinstance(client._transport, TracedTransport):
        client._transport = TracedTransport(client._transport)  # httpx has no setter
