"""The engine side of bench/day.py: the ways llama-server runs (``CONFIGS``), when it is
idle, and the trace's requests in its tokens."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

from bench.day_trace import Trace, count_new
from tests.engine.llama_server import start_llama_server


@dataclass(frozen=True)
class EngineConfig:
    """One way to run llama-server: ``slots`` None is ``-np`` auto (4 slots, unified KV);
    ``cache_ram`` False leaves the RAM cache at the engine's default (8192 MiB)."""

    slots: int | None
    cache_ram: bool = False  # pass --cache-ram (the --cache-ram option's value)
    slot_save: bool = True
    extra: tuple[str, ...] = ()

    def args(self, cache_ram: int, slots_dir: Path) -> list[str]:
        return [*(("--cache-ram", str(cache_ram)) if self.cache_ram else ()),
                *(("--slot-save-path", f"{slots_dir}/") if self.slot_save else ()),
                *self.extra, "--metrics"]

    def n_ctx(self, per_slot: int) -> int:
        return per_slot * (self.slots or 4)


CONFIGS = {
    "np1": EngineConfig(1, cache_ram=True),
    "np2": EngineConfig(2, cache_ram=True),
    # as users run it: nothing but the model, its context and the port
    "defaults": EngineConfig(None, slot_save=False),
    # the one change lmsd doctor names on the defaults
    "defaults+save": EngineConfig(None),
}


async def wait_idle(http: httpx.AsyncClient, url: str, quiet: float = 1.0,
                    at_least: float = 0.5) -> float:
    """Until no slot is processing for ``quiet`` s (and ``at_least`` s have passed)."""
    t0 = time.perf_counter()
    quiet_since = None
    while True:
        now = time.perf_counter()
        try:
            slots = (await http.get(f"{url}/slots")).json()
            busy = any(s.get("is_processing") for s in slots)
        except (httpx.TransportError, ValueError):
            busy = True
        quiet_since = None if busy else (quiet_since or now)
        if quiet_since is not None and now - quiet_since >= quiet and now - t0 >= at_least:
            return now - t0
        await trio.sleep(0.1)


async def tokenize(trace: Trace) -> None:
    """Each request's rendered prompt in the engine's tokens (a helper engine: rendering
    and tokenizing touch no cache)."""
    async with trio.open_nursery() as nursery:
        engine = await start_llama_server(nursery, n_ctx=4096)
        async with httpx.AsyncClient(timeout=120) as http:
            for req in trace.in_order():
                prompt = (await http.post(f"{engine.url}/apply-template",
                                          json=req.chat())).json()["prompt"]
                req.tokens = (await http.post(f"{engine.url}/tokenize", json={
                    "content": prompt, "parse_special": True})).json()["tokens"]
        nursery.cancel_scope.cancel()
    count_new(trace)
