"""A Claude Code working day with a model switch in it (issue 27), on a box whose memory
holds one of its two models: session 1 works on model A, the user switches to B
(``/model``: the same session, another model name) for a few turns, then back to A,
idles a while, and works on (the day: bench/day_switch_trace.py). Each mode runs the
same day on a fresh engine and a fresh lmsd:

- ``lmsd``: lmsd as it is: ``memory_budget`` = the box's memory (one model): a request
  for the model that is not loaded unloads the other and loads it once at
  ``min_context``; the model that comes back has its conversations re-warmed while the
  user is idle (``rewarm_conversations`` 1);
- ``jit``: the engine alone: LM Studio's JIT load (at 4096, auto-evict on) through lmsd
  without load-on-request (bench/cold_model.py's BENCH-ONLY patch), the watcher on (it
  reloads at ``min_context`` after each JIT load); no budget;
- ``jitguard``: ``jit`` on a box that says no: LM Studio's model loading guardrails
  refuse a load past the box's memory. Neither the model loaded by hand nor one the
  watcher reloaded counts as JIT-loaded, so auto-evict never frees their memory: in
  ``jit`` both models stay loaded (more than the box holds; the emulator does not slow
  down for it), in ``jitguard`` the load of B fails;
- ``nowarm``: ``lmsd`` with ``rewarm_conversations`` 0: what the re-warm buys.

The box (``--box``): ``lmstudio-emulator`` (tests/emulator, JIT on, each load taking
``--load-delay`` s, prefill at ``--prefill-rate`` tokens/s; each model 17 GB). A box
hands the runner lmsd's URL and, after the day, what its engine did (report:
bench/day_switch_report.py). ``llama-server``: two real llama-server processes lmsd
starts from ``[[models]]`` tables, modes ``lmsd-save``, ``lmsd-nosave``, ``both``
(bench/day_switch_llama.py). Reported per mode: loads (how, at what
context), tokens prefilled over the day against a perfect per-model cache, failed sends
(a prompt too long at 4096) and retries, TTFT of each main turn (p50, p99, the first
turn on B, the first on A again and the one after the idle pause), wall time.

    python bench/day_switch.py [--modes lmsd,jit,nowarm] [--load-delay 3]
    python bench/day_switch.py --box llama-server [--ctx-size 65536] [--max-tokens 16]
        [--prefill-rate 2000] [--idle 10] [--box-memory 20GB]
    python bench/day_switch.py --report bench/out/day-switch-<stamp>.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cold_model import PATCHED_LMSD
from bench.common import ROOT, free_port, process
from bench.day_send import send_lmsd
from bench.day_switch_llama import NAME_A, NAME_B, LlamaServerBox
from bench.day_switch_llama import TITLES as LLAMA_TITLES
from bench.day_switch_report import (
    Engine,
    Served,
    Turn,
    new_tokens,
    ratios,
    summarize,
    table,
    turns_table,
)
from bench.day_switch_trace import MODEL_A, MODEL_B, Step, build_day
from lmsd.config.parsers import byte_size
from tests.emulator import Emulator, serve_emulator
from tests.emulator.models import ModelSpec
from tests.emulator.render import render_context, tokenize
from tests.emulator.validate import ApiError

OUT = ROOT / "bench/out"
MODES = ("lmsd", "jit", "jitguard", "nowarm")
TITLES = {"lmsd": "(a) lmsd: pool, budget, re-warm",
          "jit": "(b) engine JIT + watcher reload",
          "jitguard": "(b') the same, load guardrails on",
          "nowarm": "(c) lmsd, rewarm_conversations 0"}
MODEL_BYTES = 17_000_000_000  # what the emulator's listing says each model takes
GENERATION = ("/v1/responses", "/v1/messages", "/v1/chat/completions")
#: LM Studio's guardrails refusing a load (its words, shortened)
GUARDRAIL = ("Failed to load model: Model loading was stopped due to insufficient system "
             "resources. Continuing to load the model would likely overload your system.")


class GuardedEmulator(Emulator):
    """The emulator on a box of ``memory`` bytes whose load guardrails are on: a load
    that would take more refuses (a reload of a loaded model counts once)."""

    memory = 0

    def load_model(self, key: str, context_length: int | None = None) -> ModelSpec:
        model = self.models.get(key)
        loaded = sum(m.loaded for m in self.models.values())
        if self.memory and model is not None and not model.loaded and \
                MODEL_BYTES * (loaded + 1) > self.memory:
            raise ApiError(GUARDRAIL, status=500, code="model_load_failed")
        return super().load_model(key, context_length)


class EmulatorBox:
    """LM Studio emulated in this process: its load log and requests are read directly."""

    name = "lmstudio-emulator"
    modes = MODES

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    @asynccontextmanager
    async def serve(self, mode: str, out: Path) -> AsyncIterator[Served]:
        args = self.args
        emu = GuardedEmulator(jit=True, prefill_seconds_per_token=1 / args.prefill_rate)
        emu.memory = args.box_memory if mode == "jitguard" else 0
        emu.load_delay = args.load_delay
        peak = [0]
        port, admin = free_port(), free_port()
        url = f"http://127.0.0.1:{port}"
        head = [sys.executable, "-c", PATCHED_LMSD] if mode.startswith("jit") else \
            [sys.executable, "-m", "lmsd"]
        extra = {"lmsd": ["--memory-budget", str(args.box_memory)],
                 "nowarm": ["--memory-budget", str(args.box_memory),
                            "--rewarm-conversations", "0"]}.get(mode, [])
        async with trio.open_nursery() as nursery:
            emu_url = await serve_emulator(nursery, emu)

            async def sample() -> None:  # the most memory loaded at once
                while True:
                    peak[0] = max(peak[0], MODEL_BYTES * sum(
                        m.loaded for m in emu.models.values()))
                    await trio.sleep(0.01)

            nursery.start_soon(sample)
            command = [*head, "serve", "--listen", f"127.0.0.1:{port}", "--admin-listen",
                       f"127.0.0.1:{admin}", "--upstream", emu_url, "--state-dir",
                       str(out / f"state-{mode}"), "--log-level", "info",
                       "--log-format", "json", "--watch", "--min-context",
                       str(args.min_context), "--poll-interval", str(args.poll_interval),
                       *extra]
            with (out / f"{mode}-lmsd.jsonl").open("w") as log:
                async with process(command, f"{url}/", log):
                    with trio.fail_after(30):  # the watcher's first look at the models
                        while not any(r.path == "/api/v1/models" and r.done.is_set()
                                      for r in emu.log):
                            await trio.sleep(0.01)
                    t0 = trio.current_time()

                    async def settle() -> None:
                        """Until no load is under way or due (the watcher's reload of a
                        JIT load) and nothing generates."""
                        with trio.fail_after(args.poll_interval + 4 * args.load_delay + 60):
                            while emu.jit_loading or any(
                                    m.loaded and m.context_length < args.min_context
                                    for m in emu.models.values()) or any(
                                    not r.done.is_set() for r in emu.log
                                    if r.path in GENERATION):
                                await trio.sleep(0.05)

                    yield Served(url, lambda: engine_figures(emu, t0, peak[0]), settle)
            nursery.cancel_scope.cancel()


def engine_figures(emu: Emulator, t0: float, peak: int) -> Engine:
    """The emulator's view of the day: its loads, what it prefilled (completed
    generations; a non-streamed one is lmsd's warm-up), what a perfect cache would have."""
    done = [r for r in emu.log if r.path in GENERATION and r.outcome == "completed"]
    prefilled = sum(r.input_tokens - r.cached_tokens for r in done)
    warmups = sum(r.input_tokens - r.cached_tokens for r in done if not r.stream)
    client = [r for r in done if r.stream]
    prompts = [(r.model or "", tokenize(render_context(r.context_items, r.instructions_used,
                                                       r.tools))) for r in client]
    rejected = sum(r.outcome in ("rejected", "error") for r in emu.log if r.path in GENERATION)
    loads = [{"model": x.model, "context": x.context_length, "how": x.how,
              "at": round(x.at - t0, 2)} for x in emu.loads]
    return Engine(loads, prefilled, warmups, sum(new_tokens(prompts)), peak, rejected)


BOXES: dict[str, type[EmulatorBox] | type[LlamaServerBox]] = {
    "lmstudio-emulator": EmulatorBox, "llama-server": LlamaServerBox}


async def send(http: httpx.AsyncClient, url: str, step: Step, retry: float, give_up: float
               ) -> Turn:
    """Send ``step``'s request as Claude Code does; a failed send (e.g. "prompt is too
    long" from a model JIT-loaded at 4096) is sent again after ``retry`` s, as the user
    would, for up to ``give_up`` s. TTFT counts from the first send."""
    assert step.req is not None
    t0, start = trio.current_time(), time.time()
    errors: list[str] = []
    while True:
        sent_at = trio.current_time()
        try:
            got = await send_lmsd(http, url, step.req)
            return Turn(step.name, step.model, step.main, step.mark,
                        sent_at - t0 + got.ttft, len(errors) + 1, errors, start,
                        time.time(), got.prefilled)
        except (RuntimeError, httpx.HTTPStatusError) as exc:
            errors.append(_why(exc)[:300])
        if trio.current_time() - t0 > give_up:
            return Turn(step.name, step.model, step.main, step.mark, None, len(errors), errors,
                        start, time.time())
        await trio.sleep(retry)


def _why(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return str(exc)


async def run_day(served: Served, steps: list[Step], args: argparse.Namespace,
                  mode: str) -> list[Turn]:
    turns: list[Turn] = []
    async with httpx.AsyncClient(timeout=600) as http:
        for step in steps:
            if step.req is None:
                await trio.sleep(step.idle)
                continue
            if step.beside is not None:  # the title, 80 ms before the turn (as captured)
                side = Step(step.beside.name, step.beside)
                async with trio.open_nursery() as both:
                    async def title(side: Step = side) -> None:
                        turns.append(await send(http, served.url, side, args.retry,
                                                args.give_up))
                    both.start_soon(title)
                    await trio.sleep(0.08)
                    turns.append(await send(http, served.url, step, args.retry,
                                            args.give_up))
            else:
                turns.append(await send(http, served.url, step, args.retry, args.give_up))
            t = turns[-1]
            print(f"  {mode:6} {t.name:9} {t.model.split('/')[-1]:16} "
                  f"{'gave up' if t.ttft is None else f'TTFT {t.ttft:6.2f} s'}"
                  f"{f' ({t.attempts} sends)' if t.attempts > 1 else ''} {t.mark}",
                  file=sys.stderr, flush=True)
    return turns


async def main(args: argparse.Namespace) -> None:
    stamp = f"{date.today().isoformat()}-{time.time():.0f}"
    out = OUT / f"day-switch-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    box = BOXES[args.box](args)
    models = (MODEL_A, MODEL_B) if args.box == "lmstudio-emulator" else (NAME_A, NAME_B)
    steps = build_day(*models, on_a=args.on_a, on_b=args.on_b, back=args.back,
                      idle=args.idle)
    budget = args.box_memory
    if isinstance(box, LlamaServerBox):
        box.steps, budget = steps, box.budget
    results = []
    load_before = os.getloadavg()
    for mode in (args.modes or ",".join(box.modes)).split(","):
        async with box.serve(mode, out) as served:
            t0 = trio.current_time()
            turns = await run_day(served, steps, args, mode)
            wall = trio.current_time() - t0
            if served.settle is not None:
                await served.settle()
            results.append(summarize(mode, turns, served.engine(), wall,
                                     0 if mode == "both" else budget))
    report = {"date": date.today().isoformat(), "host": platform.node(),
              "cpus": os.cpu_count(), "load_before": load_before,
              "load_after": os.getloadavg(), "box": box.name,
              "settings": {k: v for k, v in vars(args).items() if k != "report"},
              "models": list(models), "steps": [
                  {"name": s.name, "model": s.model, "main": s.main, "mark": s.mark,
                   "idle": s.idle} for s in steps], "results": results}
    path = OUT / f"day-switch-{stamp}.json"
    path.write_text(json.dumps(report, indent=1))
    print_report(report)
    print(f"\nJSON in {path}; lmsd logs in {out}")


def print_report(report: dict) -> None:
    s = report["settings"]
    if report["box"] == "llama-server":
        titles, base = LLAMA_TITLES, "lmsd-save"
        print(f"\nday with a model switch on llama-server: A {report['models'][0]}, B "
              f"{report['models'][1]} (the tiny plain model, started by lmsd), ctx-size "
              f"{s['ctx_size']}, max_tokens_cap {s['max_tokens']}, idle {s['idle']} s\n")
    else:
        titles, base = TITLES, "lmsd"
        print(f"\nday with a model switch on {report['box']}: A {report['models'][0]}, B "
              f"{report['models'][1]}; box memory {s['box_memory'] / 1e9:.0f} GB (one "
              f"model), load_delay {s['load_delay']} s, prefill {s['prefill_rate']} "
              f"tokens/s, min_context {s['min_context']}, idle {s['idle']} s\n")
    print(table(report["results"], titles))
    print()
    print(turns_table(report["results"], titles))
    print()
    for line in ratios(report["results"], base):
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--box", choices=sorted(BOXES), default="lmstudio-emulator")
    parser.add_argument("--modes", default="", help="default: all the box's ("
                        f"{','.join(MODES)} on the emulator, "
                        f"{','.join(LlamaServerBox.modes)} on llama-server)")
    parser.add_argument("--load-delay", type=float, default=3.0,
                        help="seconds each load takes (REST and JIT alike)")
    parser.add_argument("--prefill-rate", type=float, default=2000.0,
                        help="tokens per second the engine prefills (emulator tokens)")
    parser.add_argument("--idle", type=float, default=10.0,
                        help="seconds the user is away after the first turn back on A")
    parser.add_argument("--box-memory", type=byte_size, default=byte_size("20GB"),
                        help="the box's memory (lmsd's memory_budget); each model 17 GB")
    parser.add_argument("--min-context", type=int, default=32768)
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--on-a", type=int, default=5, help="main turns on A first")
    parser.add_argument("--on-b", type=int, default=3, help="main turns on B")
    parser.add_argument("--back", type=int, default=3, help="main turns on A again")
    parser.add_argument("--retry", type=float, default=1.0,
                        help="seconds before a failed request is sent again")
    parser.add_argument("--give-up", type=float, default=30.0,
                        help="seconds after which the user gives up on a request")
    parser.add_argument("--ctx-size", type=int, default=65536,
                        help="llama-server: each engine's context (Claude Code's ~20k)")
    parser.add_argument("--max-tokens", type=int, default=16,
                        help="llama-server: lmsd's max_tokens_cap (the tiny model babbles)")
    parser.add_argument("--report", type=Path, help="print the tables of a JSON result")
    options = parser.parse_args()
    if options.report:
        print_report(json.loads(options.report.read_text()))
    else:
        trio.run(main, options)
