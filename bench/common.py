"""Helpers for the benchmarks: start processes, time SSE streams, print figures."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.processes import free_port, wait_until_answering  # noqa: E402

__all__ = ["ROOT", "free_port", "lmsd_command", "percentile", "process", "summary",
           "timed_stream"]


def lmsd_command(port: int, admin_port: int, upstream: str | None, state: str,
                 *extra: str) -> list[str]:
    """``lmsd serve`` for a benchmark: its own ports and state dir, warnings only.
    ``upstream`` None: the upstreams come from ``extra`` (``--config`` with
    ``[[upstreams]]``)."""
    return [sys.executable, "-m", "lmsd", "serve", "--listen", f"127.0.0.1:{port}",
            "--admin-listen", f"127.0.0.1:{admin_port}",
            *(("--upstream", upstream) if upstream is not None else ()),
            "--state-dir", str(ROOT / "bench/out" / state), "--log-level", "warning",
            "--no-watch", *extra]


@asynccontextmanager
async def process(args: list[str], ready_url: str, output: IO[str] | None = None, *,
                  env: dict[str, str] | None = None, root: Path = ROOT
                  ) -> AsyncIterator[trio.Process]:
    """Run a helper process until the block ends; wait until ``ready_url`` answers. Its
    output goes to ``output`` (a file, e.g. for lmsd's JSON events), else to our stderr.
    ``root``: the checkout it runs from (another one: a baseline); ``env``: its whole
    environment (default ours), PYTHONPATH led by ``root``."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    async with trio.open_nursery() as nursery:
        proc: trio.Process = await nursery.start(partial_run(args, env, output, root))
        try:
            await wait_until_answering(ready_url)
            yield proc
        finally:
            proc.terminate()


def partial_run(args: list[str], env: dict[str, str], output: IO[str] | None = None,
                root: Path = ROOT):
    sink = output or sys.stderr

    async def run(task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.run_process(args, env=env, cwd=root, check=False, stdout=sink,
                               stderr=sink, task_status=task_status)
    return run


async def timed_stream(client: httpx.AsyncClient, url: str, body: bytes,
                       first_marker: bytes, headers: dict[str, str] | None = None
                       ) -> tuple[float, float]:
    """POST ``body`` (with ``headers`` besides the content type); return (time to the first
    chunk containing ``first_marker``, total)."""
    t0 = time.perf_counter()
    ttft = None
    async with client.stream("POST", url, content=body,
                             headers={**(headers or {}),
                                      "content-type": "application/json"}) as response:
        response.raise_for_status()
        async for chunk in response.aiter_raw():
            if ttft is None and first_marker in chunk:
                ttft = time.perf_counter() - t0
    total = time.perf_counter() - t0
    if ttft is None:
        raise RuntimeError(f"no {first_marker!r} in the stream from {url}")
    return ttft, total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> tuple[float, float]:
    """(median, p99) in milliseconds."""
    return statistics.median(values) * 1000, percentile(values, 0.99) * 1000


async def one_turn(http: httpx.AsyncClient, url: str, body: dict[str, Any],
                   headers: dict[str, str]) -> tuple[float, str]:
    """Stream one Anthropic turn through lmsd; (time to the first text delta, the
    text). An ``error`` event raises, naming ``headers`` (the session's)."""
    t0 = time.perf_counter()
    ttft, text = None, []
    async with http.stream("POST", f"{url}/v1/messages", json=body, headers={
            **headers, "anthropic-version": "2023-06-01"}) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = json.loads(line[6:])
            if data.get("type") == "content_block_delta":
                ttft = ttft or time.perf_counter() - t0
                text.append(data["delta"].get("text", ""))
            if data.get("type") == "error":
                raise RuntimeError(f"{headers}: {data['error']}")
    return (ttft if ttft is not None else time.perf_counter() - t0), "".join(text)
