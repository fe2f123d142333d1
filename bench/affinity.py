"""What affinity saves: Claude-Code-shaped sessions over two real llama.cpp engines
(llama-server, the tiny generated model), lmsd placing them sticky (``routing =
affinity``) against what a plain load balancer does (``routing = round_robin``).

Each engine gets ``--parallel`` slots and no RAM prompt cache (``--cache-ram 0``), or,
with ``--engine defaults``, what llama-server does unless told otherwise (``-np`` auto:
4 slots on one unified KV buffer, the RAM cache on: the strongest baseline, since a
round-robin miss may then come from the RAM cache); fresh caches before each run; there
are as many sessions as ``--slots`` x 2, so sticky placement can keep every conversation
resident. The sessions share Claude Code's
captured system prompt, then each grows its own history (a tool output's worth of text a
turn), taking turns in a shuffled order each round (fixed seed): users do not move in
lockstep, and a strict alternation would make round robin sticky by accident. Reported
per routing: prompt tokens the engines prefilled (their own ``/metrics`` counters:
``llamacpp:prompt_tokens_total`` counts only what was computed, not cache hits), median
and p90 time to first token per turn from turn 2 on, and the ratio between the two.

    python bench/affinity.py [--slots 2] [--turns 8] [--words 400] [--engine defaults]
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
from tests.engine.llama_server import MODEL_ALIAS, start_llama_server

PROSE = ("the function returns a list of paths under the project root and the test reads "
         "each file checks its header and reports what is missing")
WORDS = PROSE.split(" ")


def system_prompt() -> list[dict[str, Any]]:
    """Claude Code's captured system prompt: the start every session shares."""
    captured = json.loads((ROOT / "tests/fixtures/basic_json.json").read_text())
    return captured["requests"][0]["body"]["system"]


def user_text(session: int, turn: int, words: int) -> str:
    body = " ".join(WORDS[(session * 7 + turn * 3 + i) % len(WORDS)] for i in range(words))
    return f"session {session} turn {turn}: {body}"


async def prompt_tokens(http: httpx.AsyncClient, url: str) -> float:
    text = (await http.get(f"{url}/metrics")).text
    for line in text.splitlines():
        if line.startswith("llamacpp:prompt_tokens_total"):
            return float(line.split()[-1])
    raise RuntimeError(f"no llamacpp:prompt_tokens_total at {url}/metrics")


async def run(routing: str, args: argparse.Namespace) -> dict[str, Any]:
    async with trio.open_nursery() as nursery:
        defaults = args.engine == "defaults"
        engines = [await start_llama_server(
            nursery, n_ctx=args.ctx_per_slot * (4 if defaults else args.slots),
            slots=None if defaults else args.slots,
            extra_args=["--metrics"] if defaults else ["--metrics", "--cache-ram", "0"])
            for _ in range(2)]
        port, admin = free_port(), free_port()
        with tempfile.TemporaryDirectory() as state:
            config = Path(state) / "lmsd.toml"
            config.write_text("".join(
                f'[[upstreams]]\nname = "e{n}"\nurl = "{e.url}"\nkind = "chat"\n\n'
                for n, e in enumerate(engines, 1)))
            argv = [sys.executable, "-m", "lmsd", "serve", "--config", str(config),
                    "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
                    "--state-dir", state, "--log-level", "warning", "--no-watch",
                    "--model", MODEL_ALIAS, "--routing", routing]
            async with process(argv, f"http://127.0.0.1:{admin}/healthz"), \
                    httpx.AsyncClient(timeout=600) as http:
                before = [await prompt_tokens(http, e.url) for e in engines]
                system = system_prompt()
                sessions = 2 * args.slots
                histories: list[list[dict[str, Any]]] = [[] for _ in range(sessions)]
                ttfts: dict[int, list[float]] = {}
                order = random.Random(args.seed)
                for turn in range(args.turns):
                    for s in order.sample(range(sessions), sessions):
                        history = histories[s]
                        history.append({"role": "user",
                                        "content": user_text(s, turn, args.words)})
                        ttft, text = await one_turn(http, f"http://127.0.0.1:{port}", {
                            "model": "claude-sonnet-4-6", "max_tokens": args.max_tokens,
                            "system": system, "messages": history, "stream": True},
                            {"X-Claude-Code-Session-Id": f"bench-{s}"})
                        history.append({"role": "assistant", "content": text or "ok"})
                        ttfts.setdefault(turn, []).append(ttft)
                after = [await prompt_tokens(http, e.url) for e in engines]
                upstreams = (await http.get(f"http://127.0.0.1:{admin}/upstreams")).json()
        nursery.cancel_scope.cancel()
    later = [t for turn, values in ttfts.items() if turn > 0 for t in values]
    return {"routing": routing, "prefilled": sum(after) - sum(before),
            "per_engine": [a - b for a, b in zip(after, before, strict=True)],
            "ttft_median": statistics.median(later), "ttft_p90": percentile(later, 90),
            "first_turn_median": statistics.median(ttfts[0]),
            "per_turn": {t: round(statistics.median(v), 3) for t, v in ttfts.items()},
            "served": {u["name"]: u["served"] for u in upstreams["upstreams"]}}


async def main(args: argparse.Namespace) -> None:
    results = {}
    for routing in ("affinity", "round_robin"):  # the same process, one after the other
        results[routing] = result = await run(routing, args)
        print(f"{routing:>12}: prefilled {result['prefilled']:.0f} tokens "
              f"(per engine {result['per_engine']}), TTFT turns 2+ median "
              f"{result['ttft_median']:.3f} s, p90 {result['ttft_p90']:.3f} s, turn 1 "
              f"median {result['first_turn_median']:.3f} s; served {result['served']}")
        print(f"{'':>12}  median TTFT per turn: {result['per_turn']}")
    sticky, rr = results["affinity"], results["round_robin"]
    print(f"round_robin / affinity: prefilled tokens x{rr['prefilled'] / sticky['prefilled']:.2f}"
          f", TTFT turns 2+ median x{rr['ttft_median'] / sticky['ttft_median']:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--slots", type=int, default=2,
                        help="slots per engine (sessions: 2 x slots)")
    parser.add_argument("--ctx-per-slot", type=int, default=16384)
    parser.add_argument("--words", type=int, default=400, help="words per user turn")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--engine", choices=("np", "defaults"), default="np",
                        help="np: --parallel SLOTS --cache-ram 0; defaults: the engine's own")
    trio.run(main, parser.parse_args())
