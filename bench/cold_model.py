"""The first request for a cold model (downloaded, not loaded), two ways, same run, the
LM Studio emulator standing in for LM Studio (JIT on, each load taking ``--load-delay``
seconds, REST and JIT alike):

- ``lmsd``: lmsd as it is: it loads the model once, at ``min_context``, through LM Studio's
  load API before the request goes on (``lmsd/upstreams/min_context.py``);
- ``jit``: lmsd without load-on-request, as it was before it (commit 5c2e6ae): the request
  goes to the engine, which JIT-loads the model at its default context (4096), and lmsd's
  watcher, at its next poll, reloads it at ``min_context`` (unload, load). lmsd has no
  setting for this, so the run starts lmsd through ``lmsd_without_load_on_request`` below:
  a BENCH-ONLY monkeypatch of ``Backend.wait_ready`` back to waiting for a reload under way
  and nothing else. lmsd's behaviour for users is unchanged.

Each repetition starts a fresh emulator (in this process, so its load log is read
directly) and a fresh lmsd (its own process, watcher on at the default ``poll_interval``),
waits for the watcher's first look, then a random part of a poll interval (users do not
arrive in step with the watcher; fixed seed), and sends two short streamed Claude Code
turns (``/v1/messages``) for the cold model, the second ``--gap`` seconds after the first
ends. Reported per way: time to the first token of requests 1 and 2 (median, p99), the
time until the model is loaded at ``min_context`` (from request 1), how often request 2
waited for a load, the loads the emulator saw and the context the model ended with.

    python bench/cold_model.py [--n 7] [--load-delay 3] [--gap 0] [--poll-interval 5]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, free_port, one_turn, percentile, process
from tests.emulator import Emulator, serve_emulator

COLD = "google/gemma-3-12b"  # the emulator's downloaded, unloaded model
WAYS = ("lmsd", "jit")
TITLES = {"lmsd": "lmsd loads at min_context", "jit": "engine JIT, watcher reloads"}
#: Run lmsd with load-on-request switched off (BENCH ONLY, see the module docstring).
PATCHED_LMSD = ("import sys; from bench.cold_model import lmsd_without_load_on_request as m; "
                "sys.exit(m(sys.argv[1:]))")


def lmsd_without_load_on_request(argv: Sequence[str]) -> int:
    """BENCH ONLY: ``lmsd`` with ``Backend.wait_ready`` as before load-on-request (wait
    for a reload under way; never load), so the engine JIT-loads what a request names."""
    from lmsd.cli import main
    from lmsd.upstreams.backend import Backend

    async def wait_ready(self: Backend, model: str) -> None:
        await self.watcher.wait_ready(model)

    Backend.wait_ready = wait_ready  # type: ignore[method-assign]
    return main(argv)


@dataclass
class Run:
    """One repetition of one way."""

    ttft1: float
    ttft2: float
    ready: float  # seconds from request 1 until the model is at min_context
    loads: list[tuple[int, str]]  # (context, "rest"|"jit"), in order
    final_context: int
    waited: bool  # request 2 was sent while a load was under way
    tries1: int  # attempts until request 1 had a first token (1: it did at once)
    tries2: int


async def first_token(http: httpx.AsyncClient, url: str, body: dict, retry: float
                      ) -> tuple[float, int]:
    """(Seconds from the first send to the first token, attempts). A request that fails
    (e.g. "prompt is too long" from a model loaded at 4096) is sent again after ``retry``
    seconds, as a user would, for up to a minute."""
    t0 = trio.current_time()
    for attempt in range(1, 1000):
        sent = trio.current_time()
        try:
            ttft, _ = await one_turn(http, url, body, {})
            return sent - t0 + ttft, attempt
        except (RuntimeError, httpx.HTTPStatusError) as exc:
            if trio.current_time() - t0 > 60:
                raise RuntimeError(f"no first token in a minute: {exc}") from exc
            await trio.sleep(retry)
    raise AssertionError("unreachable")


def turns(prompt: str) -> tuple[dict, dict]:
    """Requests 1 and 2: ``short`` (a few tokens, as a chat client's), or ``claude-code``
    (Claude Code 2.1.329's captured first request, 79 KB, then the same conversation one
    exchange longer: more than a 4096-token context holds)."""
    if prompt == "short":
        first = {"model": COLD, "max_tokens": 64, "stream": True,
                 "messages": [{"role": "user", "content": "hello"}]}
    else:
        captured = json.loads((ROOT / "tests/fixtures/large_request.json").read_text())
        first = {**captured["requests"][0]["body"], "model": COLD, "stream": True}
    second = {**first, "messages": [*first["messages"], {"role": "assistant", "content": "ok"},
                                    {"role": "user", "content": "and again"}]}
    return first, second


async def one_run(way: str, i: int, args: argparse.Namespace, phase: float) -> Run:
    emu = Emulator(jit=True)
    emu.load_delay = args.load_delay
    port, admin = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    out = ROOT / "bench/out" / f"cold-model-{args.stamp}"
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    head = [py, "-m", "lmsd"] if way == "lmsd" else [py, "-c", PATCHED_LMSD]
    async with trio.open_nursery() as nursery:
        emu_url = await serve_emulator(nursery, emu)
        command = [*head, "serve", "--listen", f"127.0.0.1:{port}", "--admin-listen",
                   f"127.0.0.1:{admin}", "--upstream", emu_url, "--state-dir",
                   str(out / f"state-{way}-{i}"), "--log-level", "info", "--watch",
                   "--min-context", str(args.min_context),
                   "--poll-interval", str(args.poll_interval)]
        with (out / f"{way}-{i}.log").open("w") as log:
            async with process(command, f"{url}/", log), \
                    httpx.AsyncClient(timeout=120) as http:
                with trio.fail_after(30):  # the watcher's first look at the models
                    while not any(r.path == "/api/v1/models" and r.done.is_set()
                                  for r in emu.log):
                        await trio.sleep(0.01)
                await trio.sleep(phase)
                t0 = trio.current_time()
                first, second = turns(args.prompt)
                ttft1, tries1 = await first_token(http, url, first, args.retry)
                await trio.sleep(args.gap)
                t2 = trio.current_time()
                ttft2, tries2 = await first_token(http, url, second, args.retry)
                model = emu.models[COLD]
                settle = args.poll_interval + 2 * args.load_delay + 30
                with trio.fail_after(settle):  # the watcher's reload, if one is due
                    while not (model.loaded and model.context_length >= args.min_context
                               and not emu.jit_loading):
                        await trio.sleep(0.05)
                await trio.sleep(0.2)  # nothing more is coming (a second reload would show)
        nursery.cancel_scope.cancel()
    last = emu.loads[-1].at
    waited = any(x.at - args.load_delay <= t2 < x.at for x in emu.loads)
    return Run(ttft1, ttft2, last - t0, [(x.context_length, x.how) for x in emu.loads],
               model.context_length, waited, tries1, tries2)


def ms(values: list[float]) -> str:
    return (f"{statistics.median(values) * 1000:8.0f} ms {percentile(values, 0.99) * 1000:8.0f}"
            " ms")


def report(runs: dict[str, list[Run]], args: argparse.Namespace) -> None:
    print(f"cold model {COLD}: load_delay {args.load_delay} s per load, min_context "
          f"{args.min_context}, poll_interval {args.poll_interval} s, gap {args.gap} s, "
          f"n={args.n}")
    print(f"{'way':30} {'req 1 TTFT p50/p99':>22} {'req 2 TTFT p50/p99':>22} "
          f"{'ready p50/p99':>22} {'req 2 waited':>12}")
    for way, got in runs.items():
        waited = sum(r.waited for r in got)
        print(f"{TITLES[way]:30} {ms([r.ttft1 for r in got]):>22} "
              f"{ms([r.ttft2 for r in got]):>22} {ms([r.ready for r in got]):>22} "
              f"{waited:>5} of {len(got)}")
    for way, got in runs.items():
        failed = [r.tries1 - 1 for r in got if r.tries1 > 1]
        if failed or any(r.tries2 > 1 for r in got):
            print(f"{TITLES[way]:30} req 1 failed first in {len(failed)} of {len(got)} runs "
                  f"({sum(failed)} failed attempts; TTFT counts from the first send); req 2 "
                  f"failed first in {sum(r.tries2 > 1 for r in got)}")
    for way, got in runs.items():
        seen = sorted({(tuple(r.loads), r.final_context) for r in got})
        for loads, final in seen:
            count = sum((tuple(r.loads), r.final_context) == (loads, final) for r in got)
            said = ", ".join(f"{how} at {ctx}" for ctx, how in loads)
            print(f"{TITLES[way]:30} loads: {len(loads)} ({said}); final context {final} "
                  f"[{count} of {len(got)} runs]")
    med = {w: {k: statistics.median([getattr(r, k) for r in got]) for k in
               ("ttft1", "ttft2", "ready")} for w, got in runs.items()}
    a, b = med["lmsd"], med["jit"]
    both = {w: statistics.median([r.ttft1 + r.ttft2 for r in runs[w]]) for w in runs}
    print(f"ratio jit/lmsd, medians: req 1 TTFT {b['ttft1'] / a['ttft1']:.2f}x, req 2 TTFT "
          f"{b['ttft2'] / a['ttft2']:.2f}x, req 1 + req 2 TTFT "
          f"{both['jit'] / both['lmsd']:.2f}x, ready at min_context "
          f"{b['ready'] / a['ready']:.2f}x")


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(27)
    runs: dict[str, list[Run]] = {way: [] for way in WAYS}
    for i in range(args.n):
        phase = rng.uniform(0, args.poll_interval)  # the same for both ways
        for way in (WAYS if i % 2 == 0 else WAYS[::-1]):
            run = await one_run(way, i, args, phase)
            runs[way].append(run)
            print(f"[{i + 1}/{args.n}] {way:4} phase {phase:4.2f} s: req 1 TTFT "
                  f"{run.ttft1 * 1000:6.0f} ms, req 2 TTFT {run.ttft2 * 1000:6.0f} ms, "
                  f"ready {run.ready * 1000:6.0f} ms, loads {run.loads}, attempts "
                  f"{run.tries1}+{run.tries2}", file=sys.stderr)
    report(runs, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=7, help="repetitions of each way")
    parser.add_argument("--load-delay", type=float, default=3.0,
                        help="seconds each load takes (REST and JIT alike)")
    parser.add_argument("--gap", type=float, default=0.0,
                        help="seconds between the end of request 1 and request 2")
    parser.add_argument("--poll-interval", type=float, default=5.0,
                        help="lmsd's watcher poll interval (its default: 5)")
    parser.add_argument("--min-context", type=int, default=32768)
    parser.add_argument("--prompt", choices=("short", "claude-code"), default="short")
    parser.add_argument("--retry", type=float, default=1.0,
                        help="seconds before a failed request is sent again")
    parsed = parser.parse_args()
    parsed.stamp = f"{time.time():.0f}"
    trio.run(main, parsed)
