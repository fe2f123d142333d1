"""One working day of Claude Code traffic on real llama-server engines (issue 15): what
the engine prefills at each event, and how long the next main turn waits for its first
token, straight to the engine, through lmsd with ``keep_warm`` off, and with it on.

The trace (bench/day_trace.py builds it from captured requests), per mode on a fresh
engine and a fresh lmsd state dir:
1. session 1's main turn N, cold, with the title request 80 ms before it (captured order);
2. main N+1; 3. a subagent (haiku), then main N+2; 4. session 2's first turn, then
session 1's N+3; 5. model reload by the watcher: not applicable (llama-server serves one
model and has no load API); 6. engine restart (kill, start on the same port), wait until
idle, main N+4; 7. lmsd restart (same ports and state dir; direct: nothing; the engine
keeps running), wait until idle, main N+5.
"Idle": no slot ``is_processing`` in ``GET /slots`` for 1 s, after at least 0.5 s (the
user is away longer than one prefill; lmsd may warm up meanwhile).

Engine configs: ``np1`` (``-np 1``, the worst case: side requests evict the main prefix)
and ``np2`` (``-np 2``, per-slot KV); both ``--cache-ram`` (default 0) and
``--slot-save-path`` in every mode. Tokens prefilled come from the engine's log (every
``prompt eval time`` line, warm-ups included); "new" is what a perfect cache would
prefill: each request's tokens (llama-server's ``/apply-template`` + ``/tokenize``) minus
the longest prefix it shares with any earlier request.

    LMSD_LLAMA_SERVER=/path/to/llama-server python bench/day.py [--tools 2]
        [--configs np1,np2] [--modes direct,off,on] [--cache-ram 0]
    python bench/day.py --report bench/out/day-<date>.json   # the tables again
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT
from bench.day_engine import CONFIGS, tokenize, wait_idle
from bench.day_report import print_tables, summarize
from bench.day_send import Lmsd, Sent, send_direct, send_lmsd
from bench.day_trace import EngineLog, Req, Trace, build_trace
from tests.engine.llama_server import LlamaServer, start_llama_server

OUT = ROOT / "bench/out"
NO_REUSE = httpx.Limits(max_keepalive_connections=0)  # llama-server closes after a stream
RELOAD_NA = "n/a on llama-server: one model, no load API (the lead's emulator test covers it)"


async def run_mode(config: str, mode: str, trace: Trace, args: argparse.Namespace,
                   stamp: str, keep_warm_flag: bool) -> dict[str, Any]:
    engine_config = CONFIGS[config]
    work = Path(tempfile.mkdtemp(prefix=f"lmsd-day-{config}-{mode}-"))
    (work / "slots").mkdir()
    logs = OUT / f"day-{stamp}"
    logs.mkdir(parents=True, exist_ok=True)
    engine_args = engine_config.args(args.cache_ram, work / "slots")
    rows: list[dict[str, Any]] = []
    load_start = os.getloadavg()[0]
    async with trio.open_nursery() as nursery:
        engine: LlamaServer = await start_llama_server(
            nursery, n_ctx=engine_config.n_ctx(args.ctx_per_slot), slots=engine_config.slots,
            extra_args=engine_args,
            log_path=logs / f"{config}-{mode}-engine.log")
        lmsd = None
        lmsd_log = open(logs / f"{config}-{mode}-lmsd.jsonl", "a")  # noqa: SIM115
        if mode != "direct":
            extra = ["--no-keep-warm"] if mode == "off" and keep_warm_flag else []
            lmsd = Lmsd(nursery, engine.url, f"day-{stamp}/{config}-{mode}-state", extra,
                        lmsd_log)
            await lmsd.start()
        log = EngineLog(engine.log_path)
        async with httpx.AsyncClient(timeout=900, limits=NO_REUSE) as http:
            async def send(req: Req) -> Sent:
                if lmsd is None:
                    return await send_direct(http, engine.url, req)
                return await send_lmsd(http, lmsd.url, req)

            async def step(name: str, side: list[Req], main: Req, before: Any = None,
                           beside: bool = False) -> None:
                """``side`` (``beside``: the first one 80 ms before ``main``, as captured),
                then ``main``; what the engine prefilled meanwhile."""
                extra: dict[str, Any] = {}
                if before is not None:
                    extra = await before()
                sent: list[Sent] = []
                if beside:
                    async with trio.open_nursery() as both:
                        async def title() -> None:
                            sent.append(await send(side[0]))
                        both.start_soon(title)
                        await trio.sleep(0.08)
                        main_sent = await send(main)
                else:
                    for req in side:
                        sent.append(await send(req))
                    main_sent = await send(main)
                await wait_idle(http, engine.url, quiet=0.3, at_least=0.2)
                prefilled, prompt_ms, tasks = log.take()
                own = main_sent.prefilled or 0
                rows.append({
                    "step": name, **extra, "side": [s.to_json() for s in sent],
                    "main": main_sent.to_json(),
                    "engine_prefilled": prefilled, "engine_prompt_ms": round(prompt_ms, 1),
                    "engine_tasks": tasks, "event_prefilled": prefilled - own,
                    "new_event": sum(r.new for r in side), "new_main": main.new,
                    "tokens_main": len(main.tokens)})
                m = rows[-1]["main"]
                print(f"  {config} {mode:6} {name:34} engine prefilled {prefilled:6d} "
                      f"(event {prefilled - own:6d}), new {rows[-1]['new_event']:5d}+"
                      f"{rows[-1]['new_main']:5d}, {m['name']} TTFT {m['ttft_s']:6.2f} s, "
                      f"own {m['prefilled']}", flush=True)

            m = trace.main

            def one_prefill(turn: Req) -> float:
                """How long the engine takes to prefill ``turn`` cold, from turn N's
                measured rate: the user is away at least 1.5 times that (the issue's
                "idle longer than one prefill"), in every mode alike."""
                first = rows[0]
                rate = first["engine_prompt_ms"] / 1000 / max(first["engine_prefilled"], 1)
                return 1.5 * rate * len(turn.tokens)

            async def restart_engine() -> dict[str, Any]:
                t0 = time.perf_counter()
                await engine.restart()
                restart_s = time.perf_counter() - t0
                away = one_prefill(m[4])
                return {"restart_s": round(restart_s, 2), "user_away_s": round(away, 1),
                        "idle_wait_s": round(await wait_idle(http, engine.url,
                                                             at_least=away), 2)}

            async def restart_lmsd() -> dict[str, Any]:
                restart_s = 0.0
                if lmsd is not None:
                    await lmsd.stop()
                    restart_s = await lmsd.start()
                away = one_prefill(m[5])
                return {"restart_s": round(restart_s, 2), "user_away_s": round(away, 1),
                        "idle_wait_s": round(await wait_idle(http, engine.url,
                                                             at_least=away), 2)}

            await step("1. title 80 ms before N (cold)", [trace.title], m[0], beside=True)
            await step("2. next turn", [], m[1])
            await step("3. subagent", [trace.subagent], m[2])
            await step("4. session 2's first turn", [trace.session2], m[3])
            rows.append({"step": "5. model reload", "not_applicable": RELOAD_NA})
            await step("6. engine restart", [], m[4], restart_engine)
            await step("7. lmsd restart", [], m[5], restart_lmsd)
        if lmsd is not None:
            await lmsd.stop()
        lmsd_log.close()
        nursery.cancel_scope.cancel()
    result = summarize(config, mode, rows, logs / f"{config}-{mode}-lmsd.jsonl")
    result["load1_start_end"] = (load_start, os.getloadavg()[0])
    return result


def has_keep_warm_flag() -> bool:
    out = subprocess.run([sys.executable, "-m", "lmsd", "serve", "--help"], cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                         text=True, check=False).stdout
    return "--no-keep-warm" in out


async def main(args: argparse.Namespace) -> None:
    stamp = date.today().isoformat()
    trace = build_trace(args.tools)
    await tokenize(trace)
    print("trace: " + ", ".join(f"{r.name} {len(r.tokens)} ({r.new} new)"
                                for r in trace.in_order()), flush=True)
    keep_warm_flag = has_keep_warm_flag()
    if not keep_warm_flag:
        print("lmsd has no --no-keep-warm yet: 'off' and 'on' both run today's lmsd",
              flush=True)
    load_before = os.getloadavg()
    results = []
    t0 = time.perf_counter()
    for config in args.configs.split(","):
        for mode in args.modes.split(","):
            results.append(await run_mode(config, mode, trace, args, stamp, keep_warm_flag))
    report = {"date": stamp, "host": platform.node(), "cpus": os.cpu_count(),
              "load_before": load_before, "load_after": os.getloadavg(),
              "seconds": round(time.perf_counter() - t0, 1), "tools": args.tools,
              "cache_ram": args.cache_ram, "keep_warm_flag": keep_warm_flag,
              "requests": {r.name: {"tokens": len(r.tokens), "new": r.new}
                           for r in trace.in_order()}, "results": results}
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"day-{stamp}.json"
    path.write_text(json.dumps(report, indent=1))
    print_tables(report)
    print(f"\nload average before {load_before}, after {os.getloadavg()}; "
          f"{report['seconds']} s; JSON in {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tools", type=int, default=2,
                        help="captured tools main turns keep (2: ~7.7k tokens at turn N)")
    parser.add_argument("--configs", default="np1,np2")
    parser.add_argument("--modes", default="direct,off,on")
    parser.add_argument("--cache-ram", type=int, default=0, help="llama-server MiB")
    parser.add_argument("--ctx-per-slot", type=int, default=16384)
    parser.add_argument("--report", type=Path, help="print the tables of a JSON result")
    options = parser.parse_args()
    if options.report:
        print_tables(json.loads(options.report.read_text()))
    else:
        trio.run(main, options)
