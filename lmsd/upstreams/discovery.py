"""Find the LM Studio server without side effects: never starts LM Studio.

With ``upstream = "auto"`` the sources are tried in order: the port in LM Studio's
``.internal/http-server-config.json``, ``lms server status`` (which reads the same
file and probes; it never launches anything), a greeting probe of port 1234, and
finally the default ``http://localhost:1234`` (unreachable).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from ..log import event
from ..protocol.urls import display_url
from .lms import LmsCli, LmsError, lmstudio_home

DEFAULT_URL = "http://localhost:1234"
DEFAULT_PORT = 1234
PROBE_TIMEOUT = 0.5
CONFIGURED_TIMEOUT = 2.0


@dataclass(frozen=True)
class Found:
    """Where LM Studio is (or is assumed to be), which source said so, and whether it answered.

    ``source`` is one of "config", "http-server-config.json", "lms server status",
    "lmstudio-greeting probe", "default".
    """

    url: str  # as configured, credentials included: show ``display_url(url)``
    source: str
    reachable: bool


async def probe(client: httpx.AsyncClient, url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """True only if ``GET {url}/lmstudio-greeting`` answers 200 with ``{"lmstudio": true}``."""
    with trio.move_on_after(timeout):
        try:
            response = await client.get(f"{url.rstrip('/')}/lmstudio-greeting", timeout=timeout)
            if response.status_code != 200:
                return False
            data = response.json()
        except (httpx.HTTPError, httpx.InvalidURL, ValueError):
            return False
        return isinstance(data, dict) and data.get("lmstudio") is True
    return False


async def _answers_models(client: httpx.AsyncClient, url: str, timeout: float) -> bool:
    """True if ``GET {url}/v1/models`` answers 200 (any OpenAI-compatible server), or
    401/403: a server that is there but wants an API key (lmsd then says so)."""
    with trio.move_on_after(timeout):
        try:
            response = await client.get(f"{url.rstrip('/')}/v1/models", timeout=timeout)
        except (httpx.HTTPError, httpx.InvalidURL):
            return False
        return response.status_code in (200, 401, 403)
    return False


def _port(data: Any) -> int | None:
    """A valid TCP port from ``{"port": N, ...}``, else None."""
    port = data.get("port") if isinstance(data, dict) else None
    if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
        return port
    return None


def _config_port(lms_home: Path) -> int | None:
    """The port in ``<lms_home>/.internal/http-server-config.json``, if readable."""
    try:
        text = (lms_home / ".internal" / "http-server-config.json").read_text(encoding="utf-8")
        return _port(json.loads(text))
    except (OSError, ValueError):
        return None


async def _status_port(lms: LmsCli) -> int | None:
    """The port ``lms server status`` reports as running; None on any failure."""
    try:
        status = await lms.server_status()
    except LmsError as exc:
        event("upstream.discovery_lms_failed", logging.DEBUG, error=str(exc))
        return None
    if not status or status.get("running") is not True:
        return None
    return _port(status)


async def _discover(
    configured: str, client: httpx.AsyncClient, lms: LmsCli | None, home: Path | None, host: str
) -> Found:
    if configured != "auto":
        url = configured.rstrip("/")
        reachable = await probe(client, url, CONFIGURED_TIMEOUT) or await _answers_models(
            client, url, CONFIGURED_TIMEOUT
        )
        return Found(url, "config", reachable)

    port = _config_port(lmstudio_home(home))
    if port is not None:
        url = f"http://{host}:{port}"
        if await probe(client, url):
            return Found(url, "http-server-config.json", True)

    if lms is not None and lms.available:
        port = await _status_port(lms)
        if port is not None:
            url = f"http://{host}:{port}"
            if await probe(client, url):
                return Found(url, "lms server status", True)

    url = f"http://{host}:{DEFAULT_PORT}"
    if await probe(client, url):
        return Found(url, "lmstudio-greeting probe", True)

    return Found(DEFAULT_URL, "default", False)


async def discover(
    configured: str,
    *,
    client: httpx.AsyncClient,
    lms: LmsCli | None,
    home: Path | None = None,
    host: str = "127.0.0.1",
    quiet: bool = False,
) -> Found:
    """Where LM Studio is: ``configured`` unless it is "auto", else the first source
    that answers the greeting (see the module docstring). ``home`` stands for ``~``.

    Never starts LM Studio: of the lms CLI only ``lms server status`` is used, and a
    hanging lms is bounded by ``lms.timeout``. Logs one ``upstream.discovered`` event.
    """
    found = await _discover(configured, client, lms, home, host)
    event("upstream.discovered", level=logging.DEBUG if quiet else logging.INFO,
          url=display_url(found.url), source=found.source, reachable=found.reachable)
    return found
