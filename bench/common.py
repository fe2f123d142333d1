"""Helpers for the benchmarks: start processes, time SSE streams, print figures."""

from __future__ import annotations

import os
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_http(url: str, timeout: float = 20.0) -> None:
    async with httpx.AsyncClient() as client:
        with trio.fail_after(timeout):
            while True:
                try:
                    await client.get(url)
                    return
                except httpx.TransportError:
                    await trio.sleep(0.05)


@asynccontextmanager
async def process(args: list[str], ready_url: str) -> AsyncIterator[trio.Process]:
    """Run a helper process until the block ends; wait until ``ready_url`` answers."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    async with trio.open_nursery() as nursery:
        proc: trio.Process = await nursery.start(partial_run(args, env))
        try:
            await wait_http(ready_url)
            yield proc
        finally:
            proc.terminate()


def partial_run(args: list[str], env: dict[str, str]):
    async def run(task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.run_process(args, env=env, cwd=ROOT, check=False, stdout=sys.stderr,
                               stderr=sys.stderr, task_status=task_status)
    return run


async def timed_stream(client: httpx.AsyncClient, url: str, body: bytes,
                       first_marker: bytes) -> tuple[float, float]:
    """POST ``body``; return (time to the first chunk containing ``first_marker``, total)."""
    t0 = time.perf_counter()
    ttft = None
    async with client.stream("POST", url, content=body,
                             headers={"content-type": "application/json"}) as response:
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
