"""Load: N concurrent Claude-Code-like sessions x M turns with tool loops, through lmsd
(its own process) to emulated upstreams (in this process, with the clients).

Prints errors, requests/s, client latency and the latency lmsd adds (client-observed
time minus the emulator's own time for the same request), lmsd's peak RSS and CPU, open
file descriptors and trio task count before and after (a leak shows), and the chain hit
rate.

``--upstreams N`` runs N emulators and gives lmsd N ``[[upstreams]]`` (a temporary config
file); it then also reports, per upstream, the requests served, the sessions placed
there, the chain hit rate seen by that emulator (``previous_response_id`` sent and
found), errors and latencies, whether every session stayed on one upstream, and
``/upstreams`` at the end. ``--compare`` runs the single-upstream baseline and the N-upstream
configuration in turn (``--repeat`` times) in this process and prints the ratios: bench
figures are only comparable within one run on this shared machine.

    python bench/load.py [--sessions 50] [--turns 20] [--upstreams 1] [--compare]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import anthropic
import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, lmsd_command, percentile, process
from lmsd.daemon.listen import KEEP_ALIVE_SECONDS
from tests.emulator import Emulator, serve_emulator
from tests.emulator.state import RequestRecord

BASH = {"name": "Bash", "description": "Run a shell command",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}},
                         "required": ["command"]}}
SYSTEM = "You are a coding agent. " * 200  # a system prompt of realistic size
NAMES = "abcdefghijklmnop"


class Sample(NamedTuple):
    latency: float
    start: float
    message_id: str
    session: str
    turn: int


def proc_stats(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_kb": int(fields["VmRSS"].split()[0]), "hwm_kb": int(fields["VmHWM"].split()[0]),
            "fds": len(list(Path(f"/proc/{pid}/fd").iterdir()))}


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def admin_status(admin: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{admin}/status")).json()


async def admin_get(admin: str, path: str) -> Any:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{admin}{path}")).json()


async def session(client: anthropic.AsyncAnthropic, n: int, turns: int,
                  samples: list[Sample], errors: list[str]) -> None:
    history: list[dict[str, Any]] = []
    name = f"load-{n}"
    headers = {"X-Claude-Code-Session-Id": name}
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
        samples.append(Sample(time.perf_counter() - t0, t0, message.id, name, turn))
        history.append({"role": "assistant", "content": [
            b.model_dump(exclude_none=True) for b in message.content]})


@dataclass
class Box:
    name: str
    emu: Emulator
    url: str = ""


def config_file(boxes: list[Box]) -> str:
    """A temporary lmsd config with one ``[[upstreams]]`` per box."""
    text = "".join(f'[[upstreams]]\nname = "{b.name}"\nurl = "{b.url}"\n\n' for b in boxes)
    handle, path = tempfile.mkstemp(prefix="lmsd-load-", suffix=".toml")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    return path


def ms(values: list[float], q: float | None = None) -> str:
    if not values:
        return "-"
    value = statistics.median(values) if q is None else percentile(values, q)
    return f"{value * 1000:.1f}"


def loadavg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


async def run(n_upstreams: int, sessions: int, turns: int, routing: str) -> dict[str, float]:
    """One configuration: two rounds of load (round 2 is reported), then the leak check."""
    label = f"{n_upstreams} upstream{'s' if n_upstreams > 1 else ''}"
    print(f"\n=== {label}: {sessions} sessions x {turns} turns, routing {routing}; "
          f"load average before {loadavg()}", flush=True)
    boxes = [Box(NAMES[i] if n_upstreams > 1 else "only", Emulator(token_delay=0.002))
             for i in range(n_upstreams)]
    config = None
    async with trio.open_nursery() as nursery:
        for box in boxes:
            box.url = await serve_emulator(nursery, box.emu)
        port, admin_port = free_port(), free_port()
        admin = f"http://127.0.0.1:{admin_port}"
        state = f"load-{time.time()}"
        if n_upstreams == 1:
            args = lmsd_command(port, admin_port, boxes[0].url, state)
        else:
            config = config_file(boxes)
            args = lmsd_command(port, admin_port, None, state, "--config", config)
        if routing != "affinity":
            args += ["--routing", routing]
        try:
            async with process(args, f"{admin}/healthz") as proc:
                before = proc_stats(proc.pid)
                before_tasks = (await admin_status(admin))["trio_tasks"]
                rounds = []
                for round_no in (1, 2):
                    samples: list[Sample] = []
                    errors: list[str] = []
                    client = anthropic.AsyncAnthropic(base_url=f"http://127.0.0.1:{port}",
                                                      api_key="x", max_retries=0, timeout=120)
                    cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
                    async with client, trio.open_nursery() as clients:
                        for n in range(sessions):
                            clients.start_soon(session, client, n + 1000 * round_no, turns,
                                               samples, errors)
                    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
                    await trio.sleep(1.0)  # let the closed client connections wind down
                    after = proc_stats(proc.pid)
                    status = await admin_status(admin)
                    rounds.append((samples, errors, elapsed, cpu, after, status["trio_tasks"]))
                    print(f"round {round_no}: {len(samples)} requests in {elapsed:.1f} s, "
                          f"errors {len(errors)}; 1 s after: fds {after['fds']}, trio tasks "
                          f"{status['trio_tasks']}, RSS {after['rss_kb'] / 1024:.1f} MiB",
                          flush=True)
                await trio.sleep(KEEP_ALIVE_SECONDS + 1)  # closed connections' timers run out
                settled = proc_stats(proc.pid)
                settled_tasks = (await admin_status(admin))["trio_tasks"]
                print(f"after the keep-alive timeout: fds {settled['fds']}, trio tasks "
                      f"{settled_tasks} (before the load: fds {before['fds']}, trio tasks "
                      f"{before_tasks})")
                listed = (await admin_get(admin, "/sessions"))["sessions"]
                upstreams = (await admin_get(admin, "/upstreams")).get("upstreams", [])
        finally:
            if config:
                os.unlink(config)
        nursery.cancel_scope.cancel()
    samples, errors, elapsed, cpu, after, after_tasks = rounds[-1]
    records = {box.name: [r for r in box.emu.generations if in_round_2(r)] for box in boxes}
    added_by_request, on = match(samples, records)
    gens = [r for rs in records.values() for r in rs if r.finished is not None]
    upstream_time = statistics.median(r.finished - r.started for r in gens) if gens else 0.0
    latencies = [s.latency for s in samples]
    added = list(added_by_request.values()) or [0.0]
    added_median = [max(lat - upstream_time, 0.0) for lat in latencies]
    mine = [a for s in listed if int(s["session"].split("-")[1]) >= 2000 for a in s["agents"]]
    hits = sum(a["chain_hits"] for a in mine)
    turns_total = sum(a["turns"] for a in mine)
    expected = sessions * turns
    print("figures below are for round 2 (round 1 warmed up pools and caches)")
    print(f"{sessions} sessions x {turns} turns = {expected} requests in {elapsed:.1f} s "
          f"({len(samples) / elapsed:.1f} req/s); errors {len(errors)}; lost turns "
          f"{expected - len(samples)}")
    print(f"client latency p50 {ms(latencies)} ms, p99 {ms(latencies, 0.99)} ms; emulator's "
          f"own time per request (median) {upstream_time * 1000:.1f} ms")
    print(f"added by lmsd (client latency - the emulator's time for the same request): p50 "
          f"{ms(added)} ms, p99 {ms(added, 0.99)} ms ({len(added)} of {len(samples)} requests "
          f"matched; against the median emulator time: p50 {ms(added_median)}, p99 "
          f"{ms(added_median, 0.99)})")
    mib = {k: v / 1024 for k, v in {**before, **{f"after_{k}": v for k, v in after.items()}
                                     }.items()}
    print(f"lmsd peak RSS {mib['after_hwm_kb']:.1f} MiB (RSS before {mib['rss_kb']:.1f}, "
          f"after {mib['after_rss_kb']:.1f}); open fds before {before['fds']}, after "
          f"{after['fds']}; trio tasks before {before_tasks}, after {after_tasks}")
    print(f"lmsd CPU {cpu:.2f} s for round 2 ({cpu / max(len(samples), 1) * 1000:.2f} ms per "
          f"request)")
    print(f"chain hit rate {hits}/{turns_total} = {hits / max(turns_total, 1):.1%} "
          f"(the first turn of each session cannot chain)")
    per_upstream(boxes, records, samples, added_by_request, on, mine, upstreams)
    if errors:
        print("first errors:", *errors[:3], sep="\n  ")
    print(f"load average after {loadavg()}")
    return {"added_p50": statistics.median(added), "added_p99": percentile(added, 0.99),
            "client_p50": statistics.median(latencies),
            "client_p99": percentile(latencies, 0.99), "req_s": len(samples) / elapsed,
            "cpu_ms": cpu / max(len(samples), 1) * 1000, "peak_mib": mib["after_hwm_kb"],
            "errors": len(errors) + sum(r.outcome != "completed" for r in gens)}


def session_of(record: RequestRecord) -> str:
    return record.headers.get("x-session-id", "")


def in_round_2(record: RequestRecord) -> bool:
    name = session_of(record)
    return name.startswith("load-") and int(name.split("-")[1]) >= 2000


def match(samples: list[Sample], records: dict[str, list[RequestRecord]]
          ) -> tuple[dict[tuple[str, int], float], dict[tuple[str, int], str]]:
    """Pair each client turn with the emulator's record of it: a session's turns are
    sequential, so its k-th completed generation (over every upstream, by start time) is
    its k-th turn. Returns (added latency, upstream) by (session, turn)."""
    by_session: dict[str, list[tuple[float, str, RequestRecord]]] = {}
    for name, rs in records.items():
        for r in rs:
            if r.outcome == "completed" and r.finished is not None:
                by_session.setdefault(session_of(r), []).append((r.started, name, r))
    turns: dict[str, list[Sample]] = {}
    for s in samples:
        turns.setdefault(s.session, []).append(s)
    added: dict[tuple[str, int], float] = {}
    on: dict[tuple[str, int], str] = {}
    for name, mine in turns.items():
        seen = sorted(by_session.get(name, []), key=lambda x: x[0])
        if len(seen) != len(mine):
            continue  # a retried or failed turn: do not guess
        for s, (_, upstream, r) in zip(sorted(mine, key=lambda s: s.turn), seen, strict=True):
            assert r.finished is not None
            added[(name, s.turn)] = max(s.latency - (r.finished - r.started), 0.0)
            on[(name, s.turn)] = upstream
    return added, on


def per_upstream(boxes: list[Box], records: dict[str, list[RequestRecord]],
                 samples: list[Sample], added: dict[tuple[str, int], float],
                 on: dict[tuple[str, int], str], mine: list[dict[str, Any]],
                 upstreams: list[dict[str, Any]]) -> None:
    """Per upstream, from its emulator's log: requests, sessions, chain hits, errors,
    latencies; then stickiness and ``/upstreams``."""
    places: dict[str, set[str]] = {}
    for name, rs in records.items():
        for r in rs:
            places.setdefault(session_of(r), set()).add(name)
    latency = {(s.session, s.turn): s.latency for s in samples}
    print("per upstream (round 2, from each emulator's log):")
    for box in boxes:
        rs = records[box.name]
        chained = [r for r in rs if r.previous_response_id is not None]
        found = [r for r in chained if r.previous_response_id in box.emu.responses]
        failed = [r for r in rs if r.outcome != "completed"]
        for r in failed[:5]:
            print(f"    not completed on {box.name}: session {session_of(r)}, outcome "
                  f"{r.outcome}, status {r.status}, previous_response_id "
                  f"{r.previous_response_id}, error {r.error}")
        keys = [k for k, u in on.items() if u == box.name]
        lats, adds = [latency[k] for k in keys], [added[k] for k in keys]
        print(f"  {box.name}: requests {len(rs)}, sessions placed "
              f"{sum(1 for u in places.values() if box.name in u)}, chained {len(found)}/"
              f"{len(rs)} = {len(found) / max(len(rs), 1):.1%} (previous_response_id sent "
              f"{len(chained)}, not found {len(chained) - len(found)}), errors {len(failed)}; "
              f"client p50/p99 {ms(lats)}/{ms(lats, 0.99)} ms, added p50/p99 "
              f"{ms(adds)}/{ms(adds, 0.99)} ms")
    moved = sorted(s for s, u in places.items() if len(u) > 1)
    moves = sum(a.get("upstream_moves", 0) for a in mine)
    print(f"sessions seen on more than one upstream: {len(moved)} of {len(places)}"
          f"{' ' + ', '.join(moved[:5]) if moved else ''}; lmsd's upstream_moves: {moves}")
    print("/upstreams at the end (both rounds):")
    for u in upstreams:
        brief = {k: u.get(k) for k in ("name", "api", "in_rotation", "in_flight", "served",
                                       "active_sessions")}
        print(f"  {json.dumps(brief)} health {json.dumps(u.get('health'))}")


async def main(sessions: int, turns: int, upstreams: int, compare: bool, repeat: int,
               routing: str) -> None:
    if not compare:
        await run(upstreams, sessions, turns, routing)
        return
    results: dict[int, list[dict[str, float]]] = {1: [], upstreams: []}
    for _ in range(repeat):
        for n in (1, upstreams):
            results[n].append(await run(n, sessions, turns, routing))
    print(f"\n=== {upstreams} upstreams against 1, same process, {repeat} run(s) each "
          f"(medians over runs)")
    for key, what in (("added_p50", "added p50 ms"), ("added_p99", "added p99 ms"),
                      ("client_p50", "client p50 ms"), ("client_p99", "client p99 ms"),
                      ("cpu_ms", "lmsd CPU ms/request"), ("req_s", "req/s"),
                      ("peak_mib", "peak RSS MiB"), ("errors", "errors")):
        one = statistics.median(r[key] for r in results[1])
        several = statistics.median(r[key] for r in results[upstreams])
        scale = 1000 if key.startswith(("added", "client")) else 1
        ratio = f"{several / one:.2f}x" if one else "-"
        print(f"  {what:22s} 1: {one * scale:8.1f}   {upstreams}: {several * scale:8.1f}   "
              f"ratio {ratio}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--upstreams", type=int, default=1, help="emulators behind lmsd")
    parser.add_argument("--compare", action="store_true",
                        help="also run the single-upstream baseline and print the ratios")
    parser.add_argument("--repeat", type=int, default=1,
                        help="with --compare: alternate the two configurations this often")
    parser.add_argument("--routing", default="affinity", choices=["affinity", "round_robin"])
    args = parser.parse_args()
    if not 1 <= args.upstreams <= len(NAMES):
        parser.error(f"--upstreams: 1 to {len(NAMES)}")
    trio.run(main, args.sessions, args.turns, args.upstreams, args.compare, args.repeat,
             args.routing)
