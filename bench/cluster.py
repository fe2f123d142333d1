"""lmsd in front of a cluster gateway: what lmsd's session key saves when SGLang's model
gateway (SMG) places the requests over two real llama-servers (the tiny generated model).

Same engines, same sessions, one gateway per mode, run one after the other:

- ``manual``: lmsd's key (``x-smg-routing-key``: the session, ``session/agent`` for a
  subagent) and SMG's ``--policy manual``, which pins each key to a worker;
- ``override``: lmsd's key over SMG's ``cache_aware`` (``--routing-key-override``: a
  known key goes where it went, a new one where cache_aware says);
- ``hashing`` (not run unless named): lmsd's key and SMG's ``consistent_hashing`` (a
  key's worker is its hash's: no random assignment, no move until the ring changes);
- ``cache_aware``: no key (``affinity_headers = []``): SMG guesses from the prompt's
  prefix (its radix tree of what it sent where);
- ``round_robin``: no key, no guess.

Claude-Code-shaped sessions: each shares Claude Code's captured system prompt, then grows
its own history (a tool output's worth of words a turn); every ``--subagent-every`` turns
a session runs a subagent (its own system prompt and key, two turns) and a side request
(a haiku-class title, one short turn). Sessions take turns in a shuffled order each round
(fixed seed). Engines: ``--parallel SLOTS``, no RAM prompt cache (``--cache-ram 0``, unless
``--cache-ram MiB``), so a turn sent to the worker that does not hold its prefix prefills
it all; fresh engines per mode. Reported per mode: prompt tokens the engines prefilled
(their own ``/metrics``:
``llamacpp:prompt_tokens_total`` counts only what was computed), median and p90 time to
first token of the main sessions' turns from turn 2 on, requests per worker (SMG's own
``smg_worker_requests_total``), and each mode's ratio to ``manual``.

    python bench/cluster.py [--sessions 4] [--turns 12] [--words 150] [--slots 3]
                            [--modes manual,override,hashing,cache_aware,round_robin]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, free_port, one_turn, percentile, process
from tests.cluster.gateway import prefilled, start_gateway
from tests.engine.llama_server import MODEL_ALIAS, start_llama_server

PROSE = ("the function returns a list of paths under the project root and the test reads "
         "each file checks its header and reports what is missing")
WORDS = PROSE.split(" ")
#: SMG's command line per mode (after the worker URLs), and whether lmsd sends its key.
MODES: dict[str, tuple[list[str], bool]] = {
    "manual": (["--policy", "manual"], True),
    "override": (["--policy", "cache_aware", "--routing-key-override"], True),
    "hashing": (["--policy", "consistent_hashing"], True),
    "cache_aware": (["--policy", "cache_aware"], False),
    "round_robin": (["--policy", "round_robin"], False),
}


def system_prompt() -> list[dict[str, Any]]:
    """Claude Code's captured system prompt: the start every session shares."""
    captured = json.loads((ROOT / "tests/fixtures/basic_json.json").read_text())
    return captured["requests"][0]["body"]["system"]


def words(seed: int, count: int) -> str:
    return " ".join(WORDS[(seed * 7 + i * 3) % len(WORDS)] for i in range(count))


class Sessions:
    """The workload: main sessions, their subagents and side requests, in a fixed order."""

    def __init__(self, http: httpx.AsyncClient, url: str, args: argparse.Namespace) -> None:
        self.http, self.url, self.args = http, url, args
        self.system = system_prompt()
        self.histories: list[list[dict[str, Any]]] = [[] for _ in range(args.sessions)]
        self.ttfts: dict[int, list[float]] = {}
        self.requests = 0

    async def send(self, history: list[dict[str, Any]], text: str, headers: dict[str, str],
                   *, model: str = "claude-sonnet-4-6", system: Any = None) -> float:
        history.append({"role": "user", "content": text})
        ttft, answer = await one_turn(self.http, self.url, {
            "model": model, "max_tokens": self.args.max_tokens, "stream": True,
            "system": self.system if system is None else system, "messages": history},
            headers)
        history.append({"role": "assistant", "content": answer or "ok"})
        self.requests += 1
        return ttft

    async def run(self) -> None:
        order = random.Random(self.args.seed)
        n = self.args.sessions
        for turn in range(self.args.turns):
            for s in order.sample(range(n), n):
                headers = {"X-Claude-Code-Session-Id": f"bench-{s}"}
                ttft = await self.send(self.histories[s], f"session {s} turn {turn}: "
                                       + words(s + turn, self.args.words), headers)
                self.ttfts.setdefault(turn, []).append(ttft)
                if turn % self.args.subagent_every == self.args.subagent_every - 1:
                    await self.subagent(s, turn, headers)

    async def subagent(self, s: int, turn: int, headers: dict[str, str]) -> None:
        """A subagent (own system prompt, own key, two turns) and a title request."""
        agent = {**headers, "x-claude-code-agent-id": f"explore-{turn}"}
        system = f"You are a search subagent. {words(turn, 200)}"
        history: list[dict[str, Any]] = []
        for step in range(2):
            await self.send(history, f"find step {step}: " + words(s + step, 40), agent,
                            system=system)
        await self.send([], "Write a 5-word title for: " + words(s, 30), headers,
                        model="claude-haiku-4-5", system="You write short titles.")


async def run(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    policy, keyed = MODES[mode]
    async with trio.open_nursery() as nursery, httpx.AsyncClient(timeout=900) as http:
        engines = [await start_llama_server(
            nursery, n_ctx=args.ctx_per_slot * args.slots, slots=args.slots,
            extra_args=["--metrics", "--cache-ram", str(args.cache_ram)]) for _ in range(2)]
        gateway = await start_gateway(nursery, [e.url for e in engines], policy=policy[1],
                                      extra=policy[2:])
        port, admin = free_port(), free_port()
        with tempfile.TemporaryDirectory() as state:
            config = Path(state) / "lmsd.toml"
            config.write_text(("" if keyed else "affinity_headers = []\n") +
                              f'[[upstreams]]\nname = "cluster"\nurl = "{gateway.url}"\n'
                              'kind = "chat"\ngateway = "smg"\n')
            argv = [sys.executable, "-m", "lmsd", "serve", "--config", str(config),
                    "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
                    "--state-dir", state, "--log-level", "warning", "--no-watch",
                    "--model", MODEL_ALIAS]
            async with process(argv, f"http://127.0.0.1:{admin}/healthz"):
                before = [await prefilled(http, e.url) for e in engines]
                work = Sessions(http, f"http://127.0.0.1:{port}", args)
                await work.run()
                after = [await prefilled(http, e.url) for e in engines]
                per_worker = await gateway.worker_requests(http)
        nursery.cancel_scope.cancel()
    later = [t for turn, values in work.ttfts.items() if turn > 0 for t in values]
    return {"mode": mode, "prefilled": sum(after) - sum(before),
            "per_engine": [a - b for a, b in zip(after, before, strict=True)],
            "requests": work.requests, "per_worker": list(per_worker.values()),
            "ttft_median": statistics.median(later), "ttft_p90": percentile(later, 0.9),
            "first_turn_median": statistics.median(work.ttfts[0])}


async def main(args: argparse.Namespace) -> None:
    results: dict[str, dict[str, Any]] = {}
    for mode in args.modes.split(","):
        results[mode] = r = await run(mode, args)
        print(f"{mode:>12}: prefilled {r['prefilled']} tokens (per engine {r['per_engine']}),"
              f" TTFT turns 2+ median {r['ttft_median']:.3f} s, p90 {r['ttft_p90']:.3f} s, "
              f"turn 1 median {r['first_turn_median']:.3f} s; {r['requests']} requests, "
              f"per worker {r['per_worker']}", flush=True)
    base = results.get("manual") or next(iter(results.values()))
    for mode, r in results.items():
        if r is not base:
            print(f"{mode} / {base['mode']}: prefilled x{r['prefilled'] / base['prefilled']:.2f}"
                  f", TTFT turns 2+ median x{r['ttft_median'] / base['ttft_median']:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument("--words", type=int, default=150, help="words per user turn")
    parser.add_argument("--subagent-every", type=int, default=4)
    parser.add_argument("--slots", type=int, default=3, help="slots per engine")
    parser.add_argument("--ctx-per-slot", type=int, default=16384)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--cache-ram", type=int, default=0,
                        help="llama-server's RAM prompt cache in MiB (0: none, as here by "
                             "default; the engine's own default is 8192)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", default="manual,override,cache_aware,round_robin")
    trio.run(main, parser.parse_args())
