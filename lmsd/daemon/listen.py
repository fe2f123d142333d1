"""The two ports: hypercorn's settings, sockets bound at startup, and its serve loop.

Both are bound before anything else is done, so a taken port stops startup with one line
(naming what holds it when it answers HTTP); hypercorn then serves on those sockets, and
a restarted server binds anew.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config, Sockets
from hypercorn.logging import Logger
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from ..log import event, logger
from .holder import in_use_message, who_holds

KEEP_ALIVE_SECONDS = 15.0


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
