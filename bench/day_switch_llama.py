"""The ``llama-server`` box of bench/day_switch.py: two real llama-server engines that lmsd
starts itself from ``[[models]]`` tables (docs/models.md "llama-server: two models"), both
on the tiny generated plain model (two names, one file: the sliding-window twin's restores
restore nothing, bench/RESULTS.md), one slot each, a context that holds Claude Code's
requests. Modes:

- ``lmsd-save``: ``memory_budget`` fits one engine, ``--slot-save-path`` in both commands:
  each switch stops one engine and starts the other, lmsd saves the conversation's slot
  before the stop and the turn back restores it;
- ``lmsd-nosave``: the same without ``--slot-save-path`` (the turn back prefills again);
- ``both``: no budget, both engines stay up (what a box with room for both gets).

What the engines did comes from lmsd's own log (JSON, debug): each engine's output is an
``engine.output`` event, llama-server's ``prompt eval time = ... / N tokens`` lines among
them (one per finished task; a slot restore prints none and prefills nothing); starts,
stops, saves and restores are lmsd's events. ``new`` (a perfect cache) tokenizes each
request's rendered prompt on a helper llama-server (``/apply-template``, ``/tokenize``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from bench.common import free_port, process
from bench.day_switch_report import Engine, Served, new_tokens
from bench.day_switch_trace import Step
from bench.day_trace import PROMPT_EVAL

MODES = ("lmsd-save", "lmsd-nosave", "both")
TITLES = {"lmsd-save": "(a) budget, slot saves", "lmsd-nosave": "(b) budget, no slot saves",
          "both": "(c) no budget: both stay up"}
NAME_A, NAME_B = "tiny-a", "tiny-b"
#: lmsd's events the report counts
COUNTED = ("engine.started", "engine.crashed", "model.load", "model.loaded", "model.unload",
           "model.swap",
           "cache.saved", "cache.restored", "cache.lost", "cache.restore_ineffective",
           "model.load_failed")


def commands(binary: str, model: str, ctx: int, slots: Path | None) -> list[list[str]]:
    """Each model's llama-server command line (``${PORT}``: lmsd's choice)."""
    return [[binary, "--model", model, "--alias", name, "--jinja", "--ctx-size", str(ctx),
             "--host", "127.0.0.1", "--port", "${PORT}", "--parallel", "1", "--threads", "2",
             "--threads-batch", "2", "--no-webui", "--temp", "0",
             *(("--slot-save-path", str(slots)) if slots is not None else ())]
            for name in (NAME_A, NAME_B)]


def config_toml(settings: dict[str, Any], models: Sequence[list[str]],
                health_timeout: float = 120) -> str:
    """lmsd's config: top-level ``settings``, then one [[models]] table per command (JSON
    strings, numbers and lists are TOML)."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    for name, command in zip((NAME_A, NAME_B), models, strict=True):
        lines += ["", "[[models]]", f"name = {json.dumps(name)}",
                  f"command = {json.dumps(command)}", f"health_timeout = {health_timeout}"]
    return "\n".join(lines) + "\n"


def read_log(lines: Iterable[str]) -> tuple[list[tuple[float, str, int]],
                                              list[dict[str, Any]]]:
    """lmsd's JSON log: each engine prefill as (wall clock, model, tokens), and the
    counted events (in order). Lines that are not JSON events are skipped."""
    evals: list[tuple[float, str, int]] = []
    events: list[dict[str, Any]] = []
    for line in lines:
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        kind = data.get("event")
        if kind == "engine.output":
            found = PROMPT_EVAL.search(str(data.get("line", "")))
            if found:
                evals.append((float(data["ts"]), str(data.get("model")), int(found.group(2))))
        elif kind in COUNTED:
            events.append(data)
    return evals, events


def peak_engines(events: Sequence[dict[str, Any]]) -> int:
    """The most engines up at once: a start adds one, an unload (its engine stopped)
    takes one away."""
    up: set[str] = set()
    peak = 0
    for e in events:
        if e["event"] == "engine.started":
            up.add(e["model"])
        elif e["event"] == "model.unload":
            up.discard(e["model"])
        peak = max(peak, len(up))
    return peak


class LlamaServerBox:
    """lmsd starting two llama-server processes from ``[[models]]`` tables."""

    name = "llama-server"
    modes = MODES
    titles = TITLES

    def __init__(self, args: argparse.Namespace) -> None:
        from tests.engine.llama_server import llama_server_binary
        from tests.engine.server import model_path

        self.args = args
        self.binary = str(llama_server_binary())
        self.model = model_path()
        self.model_bytes = self.model.stat().st_size
        self.budget = self.model_bytes * 3 // 2  # fits one engine, not two
        self.steps: list[Step] = []  # set by the runner: the day, for ``new``
        self._new: int | None = None

    @asynccontextmanager
    async def serve(self, mode: str, out: Path) -> AsyncIterator[Served]:
        if mode not in MODES:
            raise SystemExit(f"--box llama-server runs {', '.join(MODES)}, not {mode}")
        args = self.args
        port, admin = free_port(), free_port()
        url = f"http://127.0.0.1:{port}"
        slots = out / f"slots-{mode}"
        slots.mkdir(parents=True, exist_ok=True)
        settings: dict[str, Any] = {
            "listen": f"127.0.0.1:{port}", "admin_listen": f"127.0.0.1:{admin}",
            "state_dir": str(out / f"state-{mode}"), "log_level": "debug",
            "log_format": "json", "max_tokens_cap": args.max_tokens}
        if mode != "both":
            settings["memory_budget"] = self.budget
        config = out / f"{mode}-config.toml"
        config.write_text(config_toml(settings, commands(
            self.binary, str(self.model), args.ctx_size,
            None if mode == "lmsd-nosave" else slots)))
        log_path = out / f"{mode}-lmsd.jsonl"
        with log_path.open("w") as log:
            async with process([sys.executable, "-m", "lmsd", "serve", "--config",
                                str(config)], f"{url}/", log):
                t0 = trio.current_time()

                async def settle() -> None:
                    await _quiet(log_path)
                    if self._new is None:
                        self._new = await self.new_tokens()

                yield Served(url, lambda: self.figures(log_path, mode, t0), settle)

    def figures(self, log_path: Path, mode: str, t0: float) -> Engine:
        with log_path.open() as log:
            evals, events = read_log(log)
        first = min((e["ts"] for e in events), default=0.0)
        loads = [{"model": e["model"], "context": _context(
                      [*events[i:], *events[:i]], e["model"]),
                  "how": "start", "at": round(e["ts"] - first, 2), "seconds": e.get("seconds")}
                 for i, e in enumerate(events) if e["event"] == "model.load"]
        return Engine(loads, sum(n for _, _, n in evals), 0, self._new or 0,
                      peak_engines(events) * self.model_bytes,
                      sum(e["event"] == "model.load_failed" for e in events), evals,
                      dict(Counter(e["event"] for e in events)))

    async def new_tokens(self) -> int:
        """What a perfect cache would prefill over the day: each request rendered and
        tokenized by a helper engine (no cache touched), per model (side requests go to
        A: every one comes while A is the model in use)."""
        from tests.engine.llama_server import start_llama_server

        prompts: list[tuple[str, list[int]]] = []
        async with trio.open_nursery() as nursery:
            engine = await start_llama_server(nursery, n_ctx=4096)
            async with httpx.AsyncClient(timeout=120) as http:
                for step in self.steps:
                    for req in (step.beside, step.req):
                        if req is None:
                            continue
                        model = req.body["model"]
                        prompt = (await http.post(f"{engine.url}/apply-template",
                                                  json=req.chat())).json()["prompt"]
                        tokens = (await http.post(f"{engine.url}/tokenize", json={
                            "content": prompt, "parse_special": True})).json()["tokens"]
                        prompts.append((model if model == NAME_B else NAME_A, tokens))
            nursery.cancel_scope.cancel()
        return sum(new_tokens(prompts))


def _context(events: Sequence[dict[str, Any]], model: str) -> int | None:
    """The context ``model``'s engine said it has (its ``/props``: llama-server caps
    ``--ctx-size`` at the model's trained context) after this start, else the one it
    said before (lmsd's watcher says it once per model)."""
    return next((e.get("context_length") for e in events
                 if e["event"] == "model.loaded" and e["model"] == model), None)


async def _quiet(path: Path, quiet: float = 5.0, limit: float = 300.0) -> None:
    """Until no engine has finished a prefill for ``quiet`` s (lmsd's warm-ups done), for
    at most ``limit`` s."""
    with trio.move_on_after(limit):
        count, since = -1, trio.current_time()
        while trio.current_time() - since < quiet:
            now = path.read_bytes().count(b"prompt eval time")
            if now != count:
                count, since = now, trio.current_time()
            await trio.sleep(0.5)
