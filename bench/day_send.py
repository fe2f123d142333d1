"""How bench/day.py sends a request and times its first token: lmsd's chat body straight
to the engine, or the Anthropic request through lmsd, which it stops and starts again
like a user's service manager."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, TextIO

import httpx
import trio

from bench.common import ROOT, free_port, lmsd_command, partial_run
from bench.day_trace import Req
from tests.engine.server import MODEL_ALIAS
from tests.support.processes import wait_until_answering


@dataclass
class Sent:
    name: str
    ttft: float
    prefilled: int | None  # the engine's prompt_n (direct) or lmsd's uncached input_tokens
    cached: int | None
    message_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ttft_s": round(self.ttft, 3), "prefilled": self.prefilled,
                "cached": self.cached, "id": self.message_id}


async def send_direct(http: httpx.AsyncClient, url: str, req: Req) -> Sent:
    """lmsd's chat body straight to the engine; TTFT = the first chunk (llama-server sends
    the role chunk with the first token)."""
    t0 = time.perf_counter()
    ttft, timings = None, {}
    async with http.stream("POST", f"{url}/v1/chat/completions", json=req.chat()) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            ttft = ttft or time.perf_counter() - t0
            timings = json.loads(line[6:]).get("timings") or timings
    return Sent(req.name, ttft or time.perf_counter() - t0, timings.get("prompt_n"),
                timings.get("cache_n"))


FIRST_OUTPUT = {"content_block_start", "content_block_delta", "message_delta", "error"}


async def send_lmsd(http: httpx.AsyncClient, url: str, req: Req) -> Sent:
    """The Anthropic request as Claude Code sends it; TTFT = the first event after
    ``message_start`` (lmsd sends that one at once)."""
    t0 = time.perf_counter()
    ttft, usage, message_id = None, {}, None
    async with http.stream("POST", f"{url}/v1/messages?beta=true", json=req.body,
                           headers=req.headers) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = json.loads(line[6:])
            kind = data.get("type")
            if kind == "message_start":
                message_id = data["message"]["id"]
            elif kind in FIRST_OUTPUT:
                ttft = ttft or time.perf_counter() - t0
            if kind == "message_delta":
                usage = data.get("usage") or usage
            if kind == "error":
                raise RuntimeError(f"{req.name}: {data['error']}")
    return Sent(req.name, ttft or time.perf_counter() - t0, usage.get("input_tokens"),
                usage.get("cache_read_input_tokens"), message_id)


class Lmsd:
    """lmsd serve on fixed ports and state dir; stop and start it again like a user's
    service manager would."""

    def __init__(self, nursery: trio.Nursery, engine: str, state: str, extra: list[str],
                 output: TextIO) -> None:
        self.nursery, self.output = nursery, output
        port, admin = free_port(), free_port()
        self.url, self.admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}"
        self.argv = lmsd_command(port, admin, engine, state, "--upstream-api", "chat",
                                 "--model", MODEL_ALIAS, "--log-level", "info",
                                 "--log-format", "json", *extra)
        self.process: trio.Process | None = None

    async def start(self) -> float:
        """Start; seconds until its admin API answers."""
        t0 = time.perf_counter()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.process = await self.nursery.start(partial_run(self.argv, env, self.output))
        await wait_until_answering(f"{self.admin}/healthz", limit=60)
        await wait_until_answering(f"{self.url}/v1/models")  # not another's admin port
        return time.perf_counter() - t0

    async def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            await self.process.wait()
