"""Run the proxy and the admin API in one trio nursery, with signal handling."""

from __future__ import annotations

import ipaddress
import signal
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from .admin import create_admin_app
from .config import ConfigError, Settings
from .log import event, logger
from .proxy import ProxyState, create_proxy_app
from .store import SessionStore
from .upstream import Upstream

GRACEFUL_SECONDS = 30.0


@dataclass(frozen=True)
class Bound:
    proxy_url: str
    admin_url: str
    store: SessionStore


def is_loopback(host_port: str) -> bool:
    host = host_port.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_security(settings: Settings) -> None:
    """Refuse to expose the admin API beyond loopback without a bearer token."""
    if not is_loopback(settings.admin_listen) and not settings.admin_token:
        raise ConfigError(
            f"admin_listen {settings.admin_listen} is not a loopback address: set "
            f"admin_token (LMSD_ADMIN_TOKEN) so the admin API requires a bearer token"
        )


def hypercorn_config(bind: str) -> Config:
    config = Config()
    config.bind = [bind]
    config.accesslog = None
    config.errorlog = logger
    config.backlog = 2048
    config.graceful_timeout = GRACEFUL_SECONDS
    config.keep_alive_timeout = 75  # outlive Claude Code's idle keep-alive reuse
    return config


async def serve(
    settings: Settings,
    *,
    shutdown: trio.Event,
    task_status: trio.TaskStatus[Bound] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown`` is set. Reports the bound URLs through ``task_status``."""
    check_security(settings)
    upstream = Upstream(
        settings.upstream,
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_timeout,
        api_key=settings.upstream_api_key,
    )
    store = SessionStore(Path(settings.state_dir) / "sessions.sqlite3",
                         max_nodes=settings.session_max_nodes, ttl=settings.session_ttl)
    await store.open()
    proxy_app = create_proxy_app(ProxyState(settings, upstream, store))
    admin_app = create_admin_app(settings, upstream)
    try:
        async with trio.open_nursery() as nursery:
            proxy = await nursery.start(partial(
                hypercorn_serve, proxy_app, hypercorn_config(settings.listen),
                shutdown_trigger=shutdown.wait,
            ))
            admin = await nursery.start(partial(
                hypercorn_serve, admin_app, hypercorn_config(settings.admin_listen),
                shutdown_trigger=shutdown.wait,
            ))
            bound = Bound(proxy[0], admin[0], store)
            event("daemon.listening", proxy=bound.proxy_url, admin=bound.admin_url,
                  upstream=settings.upstream)
            if not is_loopback(settings.listen):
                event("daemon.proxy_exposed", level=30, listen=settings.listen,
                      note="the proxy is reachable from other machines")
            task_status.started(bound)
    finally:
        with trio.CancelScope(shield=True):
            await upstream.aclose()
            await store.aclose()


async def run_daemon(settings: Settings) -> None:
    """``lmsd serve``: serve until SIGTERM or SIGINT, then shut down gracefully."""
    shutdown = trio.Event()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            async def watch_signals() -> None:
                async for signum in signals:
                    event("daemon.stopping", signal=signal.Signals(signum).name)
                    shutdown.set()
                    return

            nursery.start_soon(watch_signals)
            await nursery.start(partial(serve, settings, shutdown=shutdown))
            await shutdown.wait()
            nursery.cancel_scope.cancel()  # stop watch_signals if shutdown came otherwise
