"""Load: N concurrent Claude-Code-like sessions x M turns with tool loops, through lmsd
(its own process) to the emulator (in this process, with the client).

Prints errors, requests/s, client latency and the latency lmsd adds (client-observed
time minus the emulator's own time for the same request), lmsd's peak RSS, open file
descriptors and trio task count before and after (a leak shows), and the chain hit rate.

    python bench/load.py [--sessions 50] [--turns 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, lmsd_command, percentile, process
from lmsd.daemon.supervisor import KEEP_ALIVE_SECONDS
from tests.emulator import Emulator, serve_emulator

BASH = {"name": "Bash", "description": "Run a shell command",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}},
                         "required": ["command"]}}
SYSTEM = "You are a coding agent. " * 200  # a system prompt of realistic size


def proc_stats(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_kb": int(fields["VmRSS"].split()[0]), "hwm_kb": int(fields["VmHWM"].split()[0]),
            "fds": len(list(Path(f"/proc/{pid}/fd").iterdir()))}


async def admin_status(admin: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{admin}/status")).json()


async def session(client: anthropic.AsyncAnthropic, n: int, turns: int,
                  samples: list[tuple[float, float, str]], errors: list[str]) -> None:
    history: list[dict[str, Any]] = []
    headers = {"X-Claude-Code-Session-Id": f"load-{n}"}
    for turn in range(turns):
        last = history[-1]["content"] if history else []
        uses = [b for b in last if b["type"] == "tool_use"]
        history.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": u["id"], "content": f"out {turn}"}
            for u in uses] if uses else f"task {turn} for session {n}"})
        t0 = time.perf_counter()
        try:
            async with client.messages.stream(
                    model="claude-sonnet-4-6", max_tokens=1000, system=SYSTEM, tools=[BASH],
                    messages=history, extra_headers=headers) as stream:
                message = await stream.get_final_message()
        except anthropic.APIError as exc:
            errors.append(repr(exc))
            return
        samples.append((time.perf_counter() - t0, t0, message.id))
        history.append({"role": "assistant", "content": [
            b.model_dump(exclude_none=True) for b in message.content]})


async def main(sessions: int, turns: int) -> None:
    emu = Emulator(token_delay=0.002)
    async with trio.open_nursery() as nursery:
        emu_url = await serve_emulator(nursery, emu)
        port, admin_port = free_port(), free_port()
        admin = f"http://127.0.0.1:{admin_port}"
        args = lmsd_command(port, admin_port, emu_url, f"load-{time.time()}")
        async with process(args, f"{admin}/healthz") as proc:
            before = proc_stats(proc.pid)
            before_tasks = (await admin_status(admin))["trio_tasks"]
            rounds = []
            for round_no in (1, 2):
                samples: list[tuple[float, float, str]] = []
                errors: list[str] = []
                client = anthropic.AsyncAnthropic(base_url=f"http://127.0.0.1:{port}",
                                                  api_key="x", max_retries=0, timeout=120)
                t0 = time.perf_counter()
                async with client, trio.open_nursery() as clients:
                    for n in range(sessions):
                        clients.start_soon(session, client, n + 1000 * round_no, turns,
                                           samples, errors)
                elapsed = time.perf_counter() - t0
                await trio.sleep(1.0)  # let the closed client connections wind down
                after = proc_stats(proc.pid)
                status = await admin_status(admin)
                rounds.append((samples, errors, elapsed, after, status["trio_tasks"]))
                print(f"round {round_no}, 1 s after: fds {after['fds']}, trio tasks "
                      f"{status['trio_tasks']}, RSS {after['rss_kb'] / 1024:.1f} MiB")
            await trio.sleep(KEEP_ALIVE_SECONDS + 1)  # closed connections' timers run out
            settled, settled_tasks = proc_stats(proc.pid), (await admin_status(admin))[
                "trio_tasks"]
            print(f"after the keep-alive timeout: fds {settled['fds']}, trio tasks "
                  f"{settled_tasks} (before the load: fds {before['fds']}, trio tasks "
                  f"{before_tasks})")
            samples, errors, elapsed, after, after_tasks = rounds[-1]
            async with httpx.AsyncClient() as http:
                listed = (await http.get(f"{admin}/sessions")).json()["sessions"]
        nursery.cancel_scope.cancel()
    gens = [g for g in emu.generations if g.finished is not None]
    upstream_time = statistics.median(g.finished - g.started for g in gens)
    latencies = [s[0] for s in samples]
    added = [max(lat - upstream_time, 0.0) for lat in latencies]
    mine = [a for s in listed if int(s["session"].split("-")[1]) >= 2000 for a in s["agents"]]
    hits = sum(a["chain_hits"] for a in mine)
    turns_total = sum(a["turns"] for a in mine)
    expected = sessions * turns
    print("figures below are for round 2 (round 1 warmed up pools and caches)")
    print(f"{sessions} sessions x {turns} turns = {expected} requests in {elapsed:.1f} s "
          f"({len(samples) / elapsed:.1f} req/s); errors {len(errors)}; lost turns "
          f"{expected - len(samples)}")
    print(f"client latency p50 {statistics.median(latencies) * 1000:.1f} ms, p99 "
          f"{percentile(latencies, 0.99) * 1000:.1f} ms; emulator's own time per request "
          f"(median) {upstream_time * 1000:.1f} ms")
    print(f"added by lmsd (client latency - upstream time): p50 "
          f"{statistics.median(added) * 1000:.1f} ms, "
          f"p99 {percentile(added, 0.99) * 1000:.1f} ms")
    mib = {k: v / 1024 for k, v in {**before, **{f"after_{k}": v for k, v in after.items()}
                                     }.items()}
    print(f"lmsd peak RSS {mib['after_hwm_kb']:.1f} MiB (RSS before {mib['rss_kb']:.1f}, "
          f"after {mib['after_rss_kb']:.1f}); open fds before {before['fds']}, after "
          f"{after['fds']}; trio tasks before {before_tasks}, after {after_tasks}")
    print(f"chain hit rate {hits}/{turns_total} = {hits / max(turns_total, 1):.1%} "
          f"(the first turn of each session cannot chain)")
    if errors:
        print("first errors:", *errors[:3], sep="\n  ")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()
    trio.run(main, args.sessions, args.turns)
