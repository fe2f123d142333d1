"""The assembly: settings made into the parts lmsd is built of, wired one way for both
the daemon (``supervisor.py``) and ``lmsd replay`` (``replay.py``).

The parts: each upstream (its pooled client, found where it is, behind a ``Backend``), the
router over them, the session store, the recent requests a re-warm replays, the kept
Responses answers, the recorder, the drain, the event bus and metrics, and the two apps
given the parts they use. Nothing else in lmsd builds them (checked: import-linter's
"only the assembly builds the apps" and ``tests/daemon/test_assembly.py``), so the daemon
and a replay serve from the same wiring and differ only where they must: replay's one
upstream answers from a recording (or one confined URL) and it keeps nothing on disk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio
from quart_trio import QuartTrio

from ..admin.api import create_admin_app
from ..bus import BusHandler, EventBus
from ..config import Settings, UpstreamConfig, configured_upstreams
from ..fronts.app import create_proxy_app
from ..fronts.drain import Drain
from ..log import event, logger
from ..metrics import Metrics
from ..otel import Tracing
from ..otel import setup as setup_tracing
from ..protocol.guard import is_loopback_host
from ..sessions.recent import RecentRequests
from ..sessions.recordings import Recorder
from ..sessions.responses import ResponseHistory
from ..sessions.store import SessionStore
from ..upstreams.client import Upstream
from ..upstreams.dialect import Dialect
from ..upstreams.discovery import discover
from ..upstreams.lms import LmsCli
from ..upstreams.models.lmstudio import LmStudioModels
from ..upstreams.models.pool import ModelPool
from ..upstreams.models.started import StartedModels
from ..upstreams.models.view import models_json
from ..upstreams.router import Backend, Router
from ..upstreams.tap import RecordingTransport
from .status import status_json

LMS_TIMEOUT = 5.0  # `lms` answers in well under a second; a hung one must not stall us


@dataclass
class Proxy:
    """The proxy app and the parts it serves from."""

    settings: Settings
    backends: list[Backend]
    router: Router
    store: SessionStore
    drain: Drain
    recorder: Recorder
    history: ResponseHistory | None
    app: QuartTrio


@dataclass
class Daemon(Proxy):
    """The daemon's parts: the proxy's, the bus every log event feeds, the metrics it
    counts, and the admin app."""

    history: ResponseHistory  # the daemon always keeps them
    bus: EventBus
    metrics: Metrics
    admin_app: QuartTrio
    log_handler: logging.Handler
    tracing: Tracing | None = None  # while OTEL_* asks for traces (``otel.py``)
    started: StartedModels | None = None  # the engines it starts (``[[models]]`` commands)

    async def aclose(self) -> None:
        """Detach the bus from the log, then close the upstreams, write what the stores
        hold and export the spans still queued (shielded: this runs while the daemon is
        cancelled)."""
        logger.removeHandler(self.log_handler)
        with trio.CancelScope(shield=True):
            await self.router.aclose()
            await self.history.flush()  # the answers kept since the last write
            await self.store.aclose()
            if self.tracing is not None:  # the SDK joins its export thread: not on trio's
                await trio.to_thread.run_sync(self.tracing.shutdown)


def _proxy(settings: Settings, backends: list[Backend], router: Router, store: SessionStore,
           recorder: Recorder, history: ResponseHistory | None = None) -> Proxy:
    """The proxy app over ``router``, with a drain its streams count themselves in."""
    drain = Drain()
    app = create_proxy_app(settings, router, store, drain, recorder, history)
    return Proxy(settings, backends, router, store, drain, recorder, history, app)


def backend_for(settings: Settings, upstream: Upstream, *,
                config: UpstreamConfig | None = None, **kwargs: Any) -> Backend:
    """The backend of ``config`` (else the first upstream) with its sections of the
    settings: the one place that opens ``Settings`` for a backend."""
    return Backend(upstream, config or settings.upstream_list()[0], client=settings.client,
                   models=settings.naming, watch=settings.watcher, cache=settings.cache,
                   **kwargs)


def pool_for(settings: Settings, backend: Backend) -> ModelPool:
    """The models on demand of an upstream that loads them itself (LM Studio), within its
    memory budget, by the rules of the ``[[models]]`` tables that name no command."""
    return ModelPool(backend.name, LmStudioModels(backend.watcher),
                     budget=backend.config.memory_budget or settings.memory_budget,
                     entries=[m for m in settings.models if not m.started],
                     ttl=settings.model_ttl)


def started_backends(settings: Settings) -> tuple[list[Backend], StartedModels | None]:
    """One backend per ``[[models]]`` entry with a command (named as its model, serving
    only it, at the port chosen for it now), all sharing one pool over the engines lmsd
    starts: one box, one ``memory_budget``."""
    entries = [m for m in settings.models if m.started]
    if not entries:
        return [], None
    backends: dict[str, Backend] = {}

    def ready(model: str, url: str, restarted: bool) -> None:
        backend = backends[model]
        if url != backend.base_url:  # its port was taken meanwhile
            backend.upstream.set_base_url(url)
        backend.succeeded()  # a request that met the crash may have opened its breaker
        how = "restarted after a crash" if restarted else "started"
        backend.keeper.lost(f"lmsd {how} {model}'s engine (its cache is empty)")

    async def save(model: str) -> None:
        await backends[model].keeper.save_all(f"lmsd stops {model}'s engine")

    started = StartedModels(entries, on_ready=ready, before_stop=save)
    pool = ModelPool("local", started, budget=settings.memory_budget, entries=entries,
                     ttl=settings.model_ttl, upstream_of=lambda model: model)
    for entry in entries:
        config = UpstreamConfig(url=started.url(entry.name), name=entry.name, kind="auto",
                                models=[entry.name])
        upstream = Upstream(config.url, connect_timeout=settings.upstream_connect_timeout,
                            read_timeout=settings.upstream_timeout,
                            api_key=settings.upstream_api_key)
        backend = backend_for(settings, upstream, config=config, source="started")
        backend.discovery["reachable"] = False  # until a request starts it
        backend.pool = pool
        backend.parked = partial(started.parked, entry.name)
        backends[entry.name] = backend
    return list(backends.values()), started


def router_for(settings: Settings, backends: list[Backend]) -> Router:
    """The router with its section, and the cache's ``active_window`` (a session that
    recent holds cache where it ran)."""
    return Router(settings.router, backends, active_window=settings.active_window)


async def build_backend(settings: Settings, config: UpstreamConfig, lms: LmsCli
                        ) -> Backend:
    """One upstream: its pooled client (its own key, else the global one), found where
    it is (``auto``: LM Studio's discovery), with ``lms`` only when it is this machine's
    (the CLI speaks to the local LM Studio)."""
    upstream = Upstream(
        config.url if config.url != "auto" else "http://localhost:1234",
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_timeout,
        api_key=config.api_key or settings.upstream_api_key,
    )
    local = config.url == "auto" or is_loopback_host(urlsplit(config.url).hostname or "")
    found = await discover(config.url, client=upstream.client, lms=lms if local else None)
    upstream.set_base_url(found.url)
    backend = backend_for(settings, upstream, config=config, lms=lms if local else None,
                      source=found.source)
    backend.discovery["reachable"] = found.reachable
    backend.pool = pool_for(settings, backend)
    backend.keeper.state.model_loaded = backend.pool.loader.is_loaded
    return backend


async def assemble(settings: Settings, *, lms: LmsCli | None = None) -> Daemon:
    """Every part of the daemon, built from ``settings``: each upstream found and (when
    it answers) its dialect and slots learned, the stores opened and read back."""
    bus = EventBus()
    handler = BusHandler(bus)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)  # every event reaches the bus; handlers filter lines
    for key, note in settings.notes:
        event("config.adjusted", level=30, key=key, note=note)
    metrics = Metrics()
    bus.add_listener(metrics.observe)
    tracing = setup_tracing()  # before the upstream clients: they carry the traceparent
    lms = lms if lms is not None else LmsCli(timeout=LMS_TIMEOUT)
    backends = [await build_backend(settings, config, lms)
                for config in configured_upstreams(settings)]
    own, started = started_backends(settings)  # the engines lmsd starts itself
    backends += own
    router = router_for(settings, backends)
    store = SessionStore(Path(settings.state_dir) / "sessions.sqlite3",
                         max_nodes=settings.session_max_nodes, ttl=settings.session_ttl)
    await store.open()
    recent = RecentRequests(store)  # what a re-warm replays, also after lmsd restarts
    await recent.load()  # before the keepers learn their engines (where each was left)
    for backend in backends:
        backend.keeper.recent = recent
    for backend in backends:
        if backend.watcher.reachable is not False and backend.discovery["reachable"]:
            await backend.dialect()  # decided now rather than during the first request
            with suppress(httpx.HTTPError):  # its slots, before anything is placed
                await backend.keeper.learn()
    recorder = Recorder(Path(settings.state_dir) / "recordings", settings.record_sessions,
                        max_bytes=settings.record_max_bytes, max_age=settings.record_max_age)
    history = ResponseHistory(store, max_count=settings.session_max_nodes,
                              ttl=settings.session_ttl)  # previous_response_id, restarts too
    await history.load()
    proxy = _proxy(settings, backends, router, store, recorder, history)
    status = partial(status_json, settings=settings, router=router, store=store, bus=bus,
                     metrics=metrics, drain=proxy.drain, started_at=trio.current_time(),
                     recording=recorder.status)
    admin_app = create_admin_app(settings.access, settings.daemon, store, bus, metrics,
                                 status=status,
                                 ready=router.readiness, upstreams=router.upstreams_json,
                                 models=lambda: models_json(router.backends),
                                 forget=router.forget, recorder=recorder)
    return Daemon(**vars(proxy), bus=bus, metrics=metrics, admin_app=admin_app,
                  log_handler=handler, tracing=tracing, started=started)


def replay_proxy(settings: Settings,
                 route: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport], *,
                 dialect: type[Dialect] | None, sink: Callable[[dict[str, Any]], None]
                 ) -> Proxy:
    """``lmsd replay``'s proxy: one upstream whose requests go through ``route`` (given
    the client's own transport: the recording's answers, or a confined one) and are
    recorded as the daemon records them; its ``dialect`` the recorded one when given
    (else decided as the daemon does); sessions in memory; every exchange to ``sink``."""
    upstream = Upstream(settings.upstream, connect_timeout=5.0)
    inner = upstream.client._transport  # httpx has no public setter
    if isinstance(inner, RecordingTransport):  # Upstream taps its client already: once
        inner = inner.inner
    upstream.client._transport = RecordingTransport(route(inner))
    backend = backend_for(settings, upstream)
    if dialect is not None:  # as the recording decided
        backend._dialect_for = (upstream.base_url, dialect(upstream, "replayed"))
        upstream.name = dialect.server_name
    return _proxy(settings, [backend], router_for(settings, [backend]), SessionStore(None),
                  Recorder(None, sink=sink))
