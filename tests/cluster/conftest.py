"""Fixtures of the cluster tests: two real llama-servers (``--metrics``: their own prefill
counts) and SGLang's model gateway in front of them; lmsd then takes the gateway as one
upstream (``gateway = "smg"``)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.engine.llama_server import start_llama_server

from .gateway import Gateway, smg_binary, start_gateway


@pytest.fixture
def smg_bin() -> Any:
    """The gateway's binary; skips (with the reason) before any engine starts."""
    return smg_binary()


@pytest.fixture
async def engines(nursery: trio.Nursery, smg_bin: Any) -> list[Any]:
    return [await start_llama_server(nursery, n_ctx=8192, slots=2, extra_args=["--metrics"])
            for _ in range(2)]


@pytest.fixture
async def gateway(nursery: trio.Nursery, engines: list[Any]) -> Gateway:
    """SMG's ``manual`` policy: a routing key sticks to its worker (a new key goes to a
    random one) until that worker is unhealthy."""
    return await start_gateway(nursery, [e.url for e in engines], policy="manual")
