"""Shared fixtures: the LM Studio emulator and lmsd itself, both served in-process."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import anthropic
import httpx
import pytest
import trio
from hypothesis import settings as hypothesis_settings

from lmsd.bus import EventBus
from lmsd.config import Settings, load_settings
from lmsd.daemon.supervisor import Bound, serve
from lmsd.sessions.store import SessionStore
from lmsd.upstreams.router import Router
from tests.emulator import Emulator, serve_emulator

# CI explores a fixed, reproducible set of examples (the same on every run); local runs
# keep exploring new random ones, which is where the fuzzers found their bugs.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@dataclass
class Lmsd:
    url: str
    admin_url: str
    settings: Settings
    shutdown: trio.Event
    store: SessionStore
    router: Router
    bus: EventBus


@pytest.fixture
async def emulator(nursery: trio.Nursery) -> Emulator:
    emu = Emulator()
    emu.url = await serve_emulator(nursery, emu)  # type: ignore[attr-defined]
    return emu


@pytest.fixture
def start_lmsd(nursery: trio.Nursery, tmp_path: Any) -> Callable[..., Any]:
    """Start an lmsd (serving until the test ends); keyword arguments are settings."""

    async def start(upstream: str, **overrides: Any) -> Lmsd:
        flags = {"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0", "upstream": upstream,
                 "state_dir": str(tmp_path / "state"), "watch": "false", **overrides}
        settings = load_settings({k: v for k, v in flags.items() if k != "model_map"}, {})
        if "model_map" in overrides:
            settings.model_map = overrides["model_map"]
        shutdown = trio.Event()
        bound: Bound = await nursery.start(partial(serve, settings, shutdown=shutdown))
        return Lmsd(bound.proxy_url, bound.admin_url, settings, shutdown, bound.store,
                    bound.router, bound.bus)

    return start


@pytest.fixture
async def lmsd(start_lmsd: Callable[..., Any], emulator: Emulator) -> Lmsd:
    return await start_lmsd(emulator.url)  # type: ignore[attr-defined]


@pytest.fixture
async def client(lmsd: Lmsd) -> Any:
    async with anthropic.AsyncAnthropic(base_url=lmsd.url, api_key="sk-ant-test",
                                        max_retries=0) as c:
        yield c


@pytest.fixture
async def http(lmsd: Lmsd) -> Any:
    async with httpx.AsyncClient(base_url=lmsd.url, timeout=httpx.Timeout(30.0)) as c:
        yield c


@pytest.fixture
def dead_port() -> Any:
    """A port that refuses connections: bound, never listening."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
async def start(nursery: trio.Nursery) -> Any:
    """Factory: serve a fresh Emulator(**options); return (emu, openai client, base url)."""
    from openai import AsyncOpenAI

    clients: list[AsyncOpenAI] = []

    async def _start(**options: Any) -> tuple[Emulator, AsyncOpenAI, str]:
        emu = Emulator(**options)
        url = await serve_emulator(nursery, emu)
        client = AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=10)
        clients.append(client)
        return emu, client, url

    yield _start
    for client in clients:
        await client.close()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A real OTLP/HTTP receiver, set as lmsd's trace endpoint the standard way
    (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; the other ``OTEL_*`` cleared)."""
    pytest.importorskip("opentelemetry.sdk",
                        reason="the otel extra (lmsd[otel]) is not installed")
    from tests.support.otlp import OTEL_VARS, Receiver

    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)
    found = Receiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{found.url}/v1/traces")
    yield found
    found.close()
