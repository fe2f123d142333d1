"""The supervisor: one root nursery running the proxy, the admin API and the watcher,
over the parts ``assembly.py`` builds and the ports ``listen.py`` binds.

- The proxy's listener is essential: if it crashes, the daemon exits non-zero so the
  service manager restarts it. The admin API and the watcher are restarted with
  backoff, and the proxy keeps serving meanwhile.
- SIGTERM/SIGINT drain: stop accepting, let streams finish for ``drain_timeout``, then
  end the rest with an Anthropic ``error`` event, and exit 0.
- SIGHUP re-reads the configuration; live settings change, the others are reported.
- Under systemd (``NOTIFY_SOCKET``): READY=1, STOPPING=1 and the watchdog.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from ..bus import EventBus
from ..config import FIELDS, ConfigError, Settings, load_settings
from ..fronts.drain import Drain
from ..log import event, logger, set_level
from ..protocol.guard import is_loopback_host
from ..sessions.store import SessionStore
from ..upstreams.cache.keeper import CacheKeeper
from ..upstreams.lms import LmsCli
from ..upstreams.router import Router
from ..upstreams.watcher import Watcher
from .assembly import assemble
from .listen import StartupError, close_sockets, hypercorn_config, hypercorn_serve, listen_free
from .notify import sd_notify, watchdog, watchdog_interval

RESTART_MIN, RESTART_MAX = 0.5, 30.0
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
    parts = await assemble(settings, lms=lms)
    try:
        async with trio.open_nursery() as nursery:
            proxy = await nursery.start(partial(
                hypercorn_serve, parts.app, proxy_config, bound=proxy_sockets,
                shutdown_trigger=shutdown.wait))
            admin = await nursery.start(supervise, "admin", partial(
                hypercorn_serve, parts.admin_app, admin_config, bound=admin_sockets,
                shutdown_trigger=shutdown.wait))
            services = trio.CancelScope()

            async def background() -> None:
                with services:
                    async with trio.open_nursery() as children:
                        for backend in parts.backends:  # one watcher per upstream
                            name = "watcher" if not parts.router.several else \
                                f"watcher:{backend.name}"
                            await children.start(supervise, name,
                                                 partial(_watcher_child, backend.watcher))
                            await children.start(supervise, name.replace("watcher", "keeper"),
                                                 partial(_keeper_child, backend.keeper))
                        if parts.started is not None:  # the engines lmsd starts
                            await children.start(supervise, "engines", parts.started.run)
                        pools = {id(b.pool): b.pool for b in parts.backends if b.pool}
                        for pool in pools.values():  # models idle past their ttl
                            await children.start(supervise, f"models:{pool.name}", pool.run)
                        if (interval := watchdog_interval()) is not None:
                            children.start_soon(watchdog, interval)
                        children.start_soon(parts.history.run)

            nursery.start_soon(background)
            bound = Bound(proxy[0], admin[0], settings, parts.router, parts.store, parts.bus,
                          parts.drain)
            first = parts.backends[0]
            event("daemon.listening", proxy=bound.proxy_url, admin=bound.admin_url,
                  upstream=first.base_url, upstream_source=first.discovery["source"],
                  upstream_reachable=first.discovery["reachable"],
                  **({"upstreams": {b.name: b.base_url for b in parts.backends}}
                     if parts.router.several else {}))
            if not is_loopback(settings.listen):
                event("daemon.proxy_exposed", level=30, listen=settings.listen,
                      note="the proxy is reachable from other machines",
                      clients=sorted(settings.client_keys), tls=bool(tls))
            await sd_notify(f"READY=1\nSTATUS=serving on {bound.proxy_url}\nMAINPID="
                            f"{os.getpid()}")
            task_status.started(bound)
            await shutdown.wait()
            await sd_notify("STOPPING=1")
            await parts.drain.run(settings.drain_timeout)
            services.cancel()
    finally:
        for unused in (*proxy_sockets, *admin_sockets):  # never handed to hypercorn
            close_sockets(unused)
        await parts.aclose()


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

