"""The supervisor: one root nursery running the proxy, the admin API and the watcher.

- The proxy's listener is essential: if it crashes, the daemon exits non-zero so the
  service manager restarts it. The admin API and the watcher are restarted with
  backoff, and the proxy keeps serving meanwhile.
- SIGTERM/SIGINT drain: stop accepting, let streams finish for ``drain_timeout``, then
  end the rest with an Anthropic ``error`` event, and exit 0.
- SIGHUP re-reads the configuration; live settings change, the others are reported.
- Under systemd (``NOTIFY_SOCKET``): READY=1, STOPPING=1 and the watchdog.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio
from hypercorn.config import Config, Sockets
from hypercorn.logging import Logger
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from ..admin.api import create_admin_app
from ..bus import BusHandler, EventBus
from ..config import FIELDS, ConfigError, Settings, UpstreamConfig, load_settings
from ..fronts.app import create_proxy_app
from ..fronts.drain import Drain
from ..log import event, logger, set_level
from ..metrics import Metrics
from ..protocol.guard import is_loopback_host
from ..sessions.recent import RecentRequests
from ..sessions.responses import ResponseHistory
from ..sessions.store import SessionStore
from ..upstreams.cache.keeper import CacheKeeper
from ..upstreams.client import Upstream
from ..upstreams.discovery import discover
from ..upstreams.lms import LmsCli
from ..upstreams.recorder import Recorder
from ..upstreams.router import Backend, Router
from ..upstreams.watcher import Watcher
from .holder import in_use_message, who_holds
from .notify import sd_notify, watchdog, watchdog_interval
from .parts import backend_for, router_for
from .status import status_json

RESTART_MIN, RESTART_MAX = 0.5, 30.0
KEEP_ALIVE_SECONDS = 15.0
LMS_TIMEOUT = 5.0  # `lms` answers in well under a second; a hung one must not stall us
LIVE_KEYS = ("model", "model_map", "min_context", "ping_interval", "log_level",
             "max_tokens_cap", "poll_interval", "watch", "chaining", "strip_billing_header",
             "chat_reasoning", "allowed_hosts", "allowed_origins", "admin_token",
             "upstream_api_key", "client_keys", "client_keys_file", "trusted_network")


@dataclass(frozen=True)
class Bound:
    """Where lmsd listens, and the parts it built (for SIGHUP, and for tests)."""

    proxy_url: str
    admin_url: str
    settings: Settings
    router: Router
    store: SessionStore
    bus: EventBus
    drain: Drain


def is_loopback(host_port: str) -> bool:
    return is_loopback_host(host_port.rpartition(":")[0].strip("[]"))


def check_security(settings: Settings) -> None:
    """Refuse to expose the admin API beyond loopback without a bearer token."""
    if not is_loopback(settings.admin_listen) and not settings.admin_token:
        raise ConfigError(
            f"admin_listen {settings.admin_listen} is not a loopback address: set "
            f"admin_token (LMSD_ADMIN_TOKEN) so the admin API requires a bearer token"
        )
    if not is_loopback(settings.listen) and not settings.client_keys and \
            not settings.trusted_network:
        raise ConfigError(
            f"listen {settings.listen} is not a loopback address: set client_keys "
            f"(LMSD_CLIENT_KEYS=name=key, or client_keys_file) so the proxy requires a key, "
            f"or trusted_network = true to serve everyone who can reach it"
        )


class _LabelledLog(Logger):
    """hypercorn's log, naming the server: its two "Running on" lines otherwise look alike."""

    def __init__(self, config: Config, label: str) -> None:
        super().__init__(config)
        self.label = label

    async def info(self, message: str, *args: Any, **kwargs: Any) -> None:
        await super().info(f"{self.label}: {message}", *args, **kwargs)

    async def warning(self, message: str, *args: Any, **kwargs: Any) -> None:
        await super().warning(f"{self.label}: {message}", *args, **kwargs)

    async def error(self, message: str, *args: Any, **kwargs: Any) -> None:
        await super().error(f"{self.label}: {message}", *args, **kwargs)

    async def exception(self, message: str, *args: Any, **kwargs: Any) -> None:
        """One line (what a client made the server or the app raise, say); the traceback
        only at ``log_level = debug``, so no client can fill the log with them."""
        error = sys.exc_info()[1]
        event("server.error", level=logging.ERROR, server=self.label,
              message=(message % args if args else message)[:200],
              error=f"{type(error).__name__}: {error}"[:300] if error else None)
        logger.debug(f"{self.label}: {message} traceback", exc_info=True)


class StartupError(Exception):
    """lmsd cannot start (a port is taken, say): the message says which and why;
    ``in_use``: the address was taken (``listen_free`` then says by whom)."""

    def __init__(self, message: str, *, in_use: bool = False) -> None:
        super().__init__(message)
        self.in_use = in_use


def listen_sockets(config: Config, key: str) -> Sockets:
    """Bind and listen on ``key``'s address now, so that a taken port stops startup
    with one line before anything else is done or logged."""
    if config.ssl_enabled:
        try:
            config.create_ssl_context()  # now, so a key that fits no certificate is a line
        except (OSError, ValueError) as exc:
            raise StartupError(f"tls_cert {config.certfile} and tls_key {config.keyfile}: "
                               f"{getattr(exc, 'reason', None) or exc}") from None
    try:
        sockets = config.create_sockets()
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            sock.listen(config.backlog)
    except OSError as exc:
        raise StartupError(f"cannot listen on {config.bind[0]} ({key}): "
                           f"{exc.strerror or exc}",
                           in_use=exc.errno == errno.EADDRINUSE) from None
    return sockets


async def listen_free(config: Config, key: str) -> Sockets:
    """``listen_sockets``; a port in use names what holds it when it answers HTTP (another
    lmsd, most often: a service and a ``lmsd serve`` by hand)."""
    try:
        return listen_sockets(config, key)
    except StartupError as exc:
        if not exc.in_use:
            raise
        found = await who_holds(config.bind[0], https=config.ssl_enabled)
        where = f"cannot listen on {config.bind[0]} ({key})"
        raise StartupError(in_use_message(where, os.strerror(errno.EADDRINUSE), found,
                                          "--" + key.replace("_", "-")), in_use=True) from None


def close_sockets(sockets: Sockets) -> None:
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
        sock.close()


async def hypercorn_serve(app: Any, config: Config, *, bound: list[Sockets],
                          shutdown_trigger: Callable[..., Awaitable[None]],
                          task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
                          ) -> None:
    """hypercorn's ``serve`` on the sockets bound at startup; a restart binds anew."""
    sockets = bound.pop() if bound else None
    await worker_serve(wrap_app(app, config.wsgi_max_body_size, None), config,
                       sockets=sockets, shutdown_trigger=shutdown_trigger,
                       task_status=task_status)


def hypercorn_config(bind: str, graceful: float, label: str = "lmsd",
                     tls: tuple[str, str] | None = None) -> Config:
    """hypercorn's settings for one port; ``tls`` (certificate, key) makes it https only."""
    config = Config()
    if tls is not None:
        config.certfile, config.keyfile = tls
    config.logger_class = partial(_LabelledLog, label=label)  # type: ignore[assignment]
    config.bind = [bind]
    config.accesslog = None
    config.errorlog = logger
    config.backlog = 2048
    config.graceful_timeout = graceful
    # An idle keep-alive connection is closed after this long. hypercorn also keeps a
    # connection's task until this timer ends when the client closed it after a streamed
    # response, so a long value makes closed connections linger (bench/load.py).
    config.keep_alive_timeout = KEEP_ALIVE_SECONDS
    return config


class _StartOnce:
    """Passes ``started`` through the first time only, for children that restart."""

    def __init__(self, task_status: trio.TaskStatus[Any]) -> None:
        self.task_status = task_status
        self.done = False

    def started(self, value: Any = None) -> None:
        if not self.done:
            self.done = True
            self.task_status.started(value)


async def supervise(name: str, child: Callable[..., Awaitable[None]], *,
                    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
    """Run ``child(task_status=...)``; restart it with backoff when it crashes.

    A crash before the child reported itself started (a port already in use, say) is
    not retried: it propagates, like any startup error.
    """
    status = _StartOnce(task_status)
    delay = RESTART_MIN
    while True:
        began = trio.current_time()
        try:
            await child(task_status=status)
            return
        except Exception as exc:
            if not status.done:
                raise
            if trio.current_time() - began > 60:
                delay = RESTART_MIN
            logger.debug("child %s crashed", name, exc_info=True)
            event("child.crashed", level=logging.ERROR, child=name, error=repr(exc),
                  restart_in_s=delay)
        await trio.sleep(delay)
        delay = min(delay * 2, RESTART_MAX)
        event("child.restarted", child=name)


async def _keeper_child(keeper: CacheKeeper, *, task_status: Any) -> None:
    await keeper.run(task_status=task_status)


async def _watcher_child(watcher: Watcher, *, task_status: Any) -> None:
    task_status.started()
    await watcher.run()


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
    return backend


async def serve(
    settings: Settings,
    *,
    shutdown: trio.Event,
    lms: LmsCli | None = None,
    task_status: trio.TaskStatus[Bound] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown`` is set, then drain. Reports the bound URLs when ready."""
    check_security(settings)
    graceful = settings.drain_timeout + 5
    tls = (settings.tls_cert, settings.tls_key) if settings.tls_cert else None
    proxy_config = hypercorn_config(settings.listen, graceful, "proxy (Anthropic API)", tls)
    admin_config = hypercorn_config(settings.admin_listen, 1.0, "admin API", tls)
    proxy_sockets = [await listen_free(proxy_config, "listen")]
    try:
        admin_sockets = [await listen_free(admin_config, "admin_listen")]
    except StartupError:
        close_sockets(proxy_sockets[0])
        raise
    bus = EventBus()
    handler = BusHandler(bus)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)  # every event reaches the bus; handlers filter lines
    for key, note in settings.notes:
        event("config.adjusted", level=30, key=key, note=note)
    metrics = Metrics()
    bus.add_listener(metrics.observe)
    lms = lms if lms is not None else LmsCli(timeout=LMS_TIMEOUT)
    backends = [await build_backend(settings, config, lms)
                for config in settings.upstream_list()]
    router = router_for(settings, backends)
    store = SessionStore(Path(settings.state_dir) / "sessions.sqlite3",
                         max_nodes=settings.session_max_nodes, ttl=settings.session_ttl)
    await store.open()
    recent = RecentRequests(store)  # what a re-warm replays, also after lmsd restarts
    await recent.load()  # before the keepers learn their engines (where each was left)
    for backend in backends:
        backend.keeper.recent = recent
    drain = Drain()
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
    proxy_app = create_proxy_app(settings, router, store, drain, recorder, history)
    status = partial(status_json, settings=settings, router=router, store=store, bus=bus,
                     metrics=metrics, drain=drain, started_at=trio.current_time(),
                     recording=recorder.status)
    admin_app = create_admin_app(settings.access, settings.daemon, store, bus, metrics,
                                 status=status, ready=router.readiness,
                                 upstreams=router.upstreams_json, forget=router.forget,
                                 recorder=recorder)
    try:
        async with trio.open_nursery() as nursery:
            proxy = await nursery.start(partial(
                hypercorn_serve, proxy_app, proxy_config, bound=proxy_sockets,
                shutdown_trigger=shutdown.wait))
            admin = await nursery.start(supervise, "admin", partial(
                hypercorn_serve, admin_app, admin_config, bound=admin_sockets,
                shutdown_trigger=shutdown.wait))
            services = trio.CancelScope()

            async def background() -> None:
                with services:
                    async with trio.open_nursery() as children:
                        for backend in backends:  # one watcher per upstream
                            name = "watcher" if not router.several else \
                                f"watcher:{backend.name}"
                            await children.start(supervise, name,
                                                 partial(_watcher_child, backend.watcher))
                            await children.start(supervise, name.replace("watcher", "keeper"),
                                                 partial(_keeper_child, backend.keeper))
                        if (interval := watchdog_interval()) is not None:
                            children.start_soon(watchdog, interval)
                        children.start_soon(history.run)

            nursery.start_soon(background)
            bound = Bound(proxy[0], admin[0], settings, router, store, bus, drain)
            first = backends[0]
            event("daemon.listening", proxy=bound.proxy_url, admin=bound.admin_url,
                  upstream=first.base_url, upstream_source=first.discovery["source"],
                  upstream_reachable=first.discovery["reachable"],
                  **({"upstreams": {b.name: b.base_url for b in backends}}
                     if router.several else {}))
            if not is_loopback(settings.listen):
                event("daemon.proxy_exposed", level=30, listen=settings.listen,
                      note="the proxy is reachable from other machines",
                      clients=sorted(settings.client_keys), tls=bool(tls))
            await sd_notify(f"READY=1\nSTATUS=serving on {bound.proxy_url}\nMAINPID="
                            f"{os.getpid()}")
            task_status.started(bound)
            await shutdown.wait()
            await sd_notify("STOPPING=1")
            await drain.run(settings.drain_timeout)
            services.cancel()
    finally:
        logger.removeHandler(handler)
        for unused in (*proxy_sockets, *admin_sockets):  # never handed to hypercorn
            close_sockets(unused)
        with trio.CancelScope(shield=True):
            await router.aclose()
            await history.flush()  # the answers kept since the last write
            await store.aclose()


def reload_settings(settings: Settings, router: Router, flags: Mapping[str, Any]
                    ) -> list[str]:
    """Re-read the config (SIGHUP): apply live keys; return keys that need a restart."""
    try:
        fresh = load_settings(flags)
    except ConfigError as exc:
        event("config.reload_failed", level=logging.ERROR, error=str(exc),
              effect="kept the running configuration")
        return []
    current = settings
    try:
        check_security(fresh.replace(admin_listen=current.admin_listen,  # the bound ones
                                     listen=current.listen))
    except ConfigError as exc:
        event("config.reload_failed", level=logging.ERROR, error=str(exc),
              effect="kept the running configuration")
        return []
    changed, restart = [], []
    for name in FIELDS:
        old, new = getattr(current, name), getattr(fresh, name)
        if old == new:
            continue
        if name in LIVE_KEYS:
            setattr(current, name, new)  # into the section the running part holds
            changed.append(name)
        else:
            restart.append(name)
    if "log_level" in changed:
        set_level(current.log_level)
    if "upstream_api_key" in changed:  # the event names it, never its value
        router.set_api_key(current.upstream_api_key)
    event("config.reloaded", changed=changed, needs_restart=restart)
    return restart


async def run_daemon(settings: Settings, flags: Mapping[str, Any] | None = None) -> None:
    """``lmsd serve``: serve until SIGTERM or SIGINT, then drain and return (exit 0)."""
    shutdown = trio.Event()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            bound: Bound = await nursery.start(partial(serve, settings, shutdown=shutdown))

            async def watch_signals() -> None:
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        reload_settings(bound.settings, bound.router, flags or {})
                        continue
                    event("daemon.stopping", signal=signal.Signals(signum).name)
                    shutdown.set()
                    return

            nursery.start_soon(watch_signals)
            await shutdown.wait()
        event("daemon.stopped")

