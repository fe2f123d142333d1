"""Soak: Claude-Code-like sessions at a steady, lower rate for a long time (default 10
minutes), through lmsd to the emulator. Every minute it prints lmsd's RSS, open file
descriptors and trio task count; a leak shows as a number that keeps climbing.

    python bench/soak.py [--minutes 10] [--sessions 10] [--rate 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import anthropic
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, lmsd_command, process
from bench.load import Sample, admin_status, proc_stats, session
from tests.emulator import Emulator, serve_emulator


async def main(minutes: float, sessions: int, rate: float, max_nodes: int) -> None:
    emu = Emulator(token_delay=0.002)
    async with trio.open_nursery() as nursery:
        emu_url = await serve_emulator(nursery, emu)
        port, admin_port = free_port(), free_port()
        admin = f"http://127.0.0.1:{admin_port}"
        args = lmsd_command(port, admin_port, emu_url, f"soak-{time.time()}",
                            "--session-max-nodes", str(max_nodes))
        async with process(args, f"{admin}/healthz") as proc:
            samples: list[Sample] = []
            errors: list[str] = []
            deadline = trio.current_time() + minutes * 60
            client = anthropic.AsyncAnthropic(base_url=f"http://127.0.0.1:{port}",
                                              api_key="x", max_retries=0, timeout=120)

            async def report() -> None:
                start = time.perf_counter()
                while True:
                    stats = proc_stats(proc.pid)
                    tasks = (await admin_status(admin))["trio_tasks"]
                    print(f"{(time.perf_counter() - start) / 60:5.1f} min: requests "
                          f"{len(samples):6d}, errors {len(errors)}, RSS "
                          f"{stats['rss_kb'] / 1024:6.1f} MiB, fds {stats['fds']:4d}, "
                          f"trio tasks {tasks:4d}", flush=True)
                    await trio.sleep(60)

            async def driver() -> None:
                n = 0
                async with trio.open_nursery() as runs:
                    while trio.current_time() < deadline:
                        runs.start_soon(session, client, n, 20, samples, errors)
                        n += 1
                        await trio.sleep(20 / rate)  # each session makes 20 requests

            async with client, trio.open_nursery() as inner:
                inner.start_soon(report)
                await driver()
                inner.cancel_scope.cancel()
            stats = proc_stats(proc.pid)
            print(f"done: {len(samples)} requests, {len(errors)} errors, peak RSS "
                  f"{stats['hwm_kb'] / 1024:.1f} MiB")
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second")
    parser.add_argument("--max-nodes", type=int, default=10_000,
                        help="lmsd's session_max_nodes (small values show the plateau)")
    args = parser.parse_args()
    trio.run(main, args.minutes, args.sessions, args.rate, args.max_nodes)
