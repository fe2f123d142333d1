"""lmsd against its peers: the same captured Claude Code requests through lmsd, LiteLLM's
proxy (its Anthropic ``/v1/messages`` route, ``lm_studio/`` provider, chat completions
upstream) and claude-code-router (CCR, chat completions upstream), all in front of one
LM Studio emulator, plus the emulator called directly as the floor (``/v1/responses``
for lmsd, ``/v1/chat/completions`` for the chat peers).

For each system: median and p99 time to first token (first content delta) and total time
over N alternating runs of each request (the first request of ``basic_json``, answered by
a Bash tool call, and its tool-loop second request, answered by text), the overhead over
the matching direct call, CPU seconds per 100 requests and peak RSS of the system's
processes, the ratios to lmsd, and a correctness column from the anthropic SDK's stream
accumulator (tool ids, usage, thinking blocks, stop reasons).

Peers live outside the project venv: LiteLLM in ``bench/out/peers-venv``, CCR under
``bench/out/ccr`` (installed on first use unless ``--no-install``). A peer that cannot be
installed or started is reported and skipped.

    python bench/peers.py [--n 100] [--only lmsd,litellm,ccr] [--no-install]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, free_port
from bench.peers_checks import check
from bench.peers_report import report
from bench.peers_systems import (
    API_KEY,
    Unavailable,
    cpu_seconds,
    peak_rss_mb,
    service,
    start_ccr,
    start_litellm,
    start_lmsd,
)
from bench.peers_traffic import (
    ANTHROPIC_DELTA,
    CHAT_DELTA,
    RESPONSES_DELTA,
    System,
    captured,
    chat_body,
    responses_body,
    run_emulator,
    run_rounds,
)


async def main(args: argparse.Namespace) -> None:
    wanted = set(args.only.split(","))
    bodies, beta = captured()
    for body in bodies:
        body["stream"] = True
    raw = [json.dumps(b).encode() for b in bodies]
    resp = [responses_body(b) for b in bodies]
    chat = [chat_body(r) for r in resp]
    anthropic_headers = {"content-type": "application/json", "anthropic-version": "2023-06-01",
                         **beta, "x-api-key": API_KEY}
    json_headers = {"content-type": "application/json", "authorization": "Bearer lm-studio"}
    failed: dict[str, str] = {}
    extra_checks: dict[str, dict[str, str]] = {}
    emu_port = free_port()
    emu_url = f"http://127.0.0.1:{emu_port}"
    with tempfile.TemporaryDirectory(prefix="lmsd-peers-") as tmpdir:
        tmp = Path(tmpdir)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        async with AsyncExitStack() as stack:
            emu_proc = await stack.enter_async_context(service(
                "emulator", [sys.executable, str(Path(__file__).resolve()), "--emulator-port",
                             str(emu_port)], f"{emu_url}/v1/models", tmp / "emulator.log",
                env=env))
            systems = [
                System("direct /v1/responses", f"{emu_url}/v1/responses",
                       [json.dumps(r).encode() for r in resp], json_headers, RESPONSES_DELTA),
                System("direct /v1/chat/completions", f"{emu_url}/v1/chat/completions",
                       [json.dumps(c).encode() for c in chat], json_headers, CHAT_DELTA),
            ]
            starters: dict[str, Callable[[], Any]] = {
                "lmsd": lambda: start_lmsd(emu_url, tmp),
                "litellm": lambda: start_litellm(emu_url, tmp, not args.no_install),
                "ccr": lambda: start_ccr(emu_url, tmp, not args.no_install),
            }
            floors = {"lmsd": "direct /v1/responses"}
            for name, starter in starters.items():
                if name not in wanted:
                    continue
                print(f"starting {name} ...", file=sys.stderr, flush=True)
                try:
                    url, proc = await stack.enter_async_context(starter())
                except Unavailable as exc:
                    failed[name] = str(exc)
                    print(f"  {name} unavailable: {exc}", file=sys.stderr, flush=True)
                    continue
                systems.append(System(name, f"{url}/v1/messages", raw, anthropic_headers,
                                      ANTHROPIC_DELTA,
                                      floor=floors.get(name, "direct /v1/chat/completions"),
                                      base_url=url, proc=proc))
            async with httpx.AsyncClient(timeout=httpx.Timeout(60.0)) as client:
                await run_rounds(client, systems, args.warmup, record=False)
                for system in systems:
                    if system.errors:
                        print(f"  {system.name} fails in warm-up: {system.errors[0][:300]}",
                              file=sys.stderr, flush=True)
                print(f"timing {args.n} alternating rounds ...", file=sys.stderr, flush=True)
                start_cpu = {s.name: cpu_seconds(s.proc.pid) for s in systems if s.proc}
                emu_start = cpu_seconds(emu_proc.pid)
                await run_rounds(client, systems, args.n, record=True)
                served = sum(len(s.samples[0]) + len(s.samples[1]) for s in systems)
                emu_cpu = (cpu_seconds(emu_proc.pid) - emu_start) / max(served, 1) * 100
                for system in systems:
                    if system.proc:
                        done = len(system.samples[0]) + len(system.samples[1])
                        used = cpu_seconds(system.proc.pid) - start_cpu[system.name]
                        system.cpu = used / max(done, 1) * 100
                        system.rss = peak_rss_mb(system.proc.pid)
            print("correctness checks (anthropic SDK) ...", file=sys.stderr, flush=True)
            for system in systems:
                if system.base_url:
                    system.checks = await trio.to_thread.run_sync(
                        check, system.base_url, bodies, beta["anthropic-beta"])
            # Other configurations, correctness only: LiteLLM's generic OpenAI provider, and
            # CCR with its documented transformers for reasoning_content and stream usage.
            variants: list[tuple[str, Callable[[], Any]]] = []
            if "litellm" in wanted and "litellm" not in failed:
                variants.append(("litellm openai/ (Responses API upstream)",
                                 lambda: start_litellm(emu_url, tmp, False, "openai")))
            if "ccr" in wanted and "ccr" not in failed:
                for use in (["reasoning"], ["streamoptions"], ["reasoning", "streamoptions"]):
                    variants.append((f"ccr + transformer {'+'.join(use)}",
                                     lambda use=use: start_ccr(emu_url, tmp, False, use)))
            for label, starter in variants if not args.no_variants else []:
                print(f"checking {label} ...", file=sys.stderr, flush=True)
                try:
                    async with starter() as (url, _):
                        extra_checks[label] = await trio.to_thread.run_sync(
                            check, url, bodies, beta["anthropic-beta"])
                except Unavailable as exc:
                    extra_checks[label] = {"start": f"FAIL {exc}"}
    report(systems, failed, args.n, emu_cpu, extra_checks)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="timed rounds (each request)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--only", default="lmsd,litellm,ccr", help="peers to run")
    parser.add_argument("--no-install", action="store_true", help="do not install peers")
    parser.add_argument("--no-variants", action="store_true",
                        help="skip the correctness checks of other peer configurations")
    parser.add_argument("--emulator-port", type=int, help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.emulator_port:
        run_emulator(parsed.emulator_port)
    else:
        trio.run(main, parsed)
