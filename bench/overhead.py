"""What lmsd adds to each request, per front: a captured request sent straight to the
emulator's /v1/responses (as the Responses body lmsd makes of it, so that the model's
work is the same) and through lmsd, alternating, N times each. Prints median and p99
time to first token and total time, and lmsd's overhead in ms and as a ratio.

- ``messages``: a captured ~78 KB Claude Code 2.1.329 request on ``/v1/messages``;
- ``responses``: a captured Codex CLI 0.171 request (``resp-resume`` request 4: default
  tools with a namespace and ``web_search``, mid tool loop), with Codex's headers;
- ``chat``: the Claude Code conversation as an openai-SDK-style ``/v1/chat/completions``
  request (streamed, ``include_usage``, function tools).

Every selected front gets its own direct baseline in the same run, one front after the
other. Not interleaved across fronts: the emulator models LM Studio's prefix cache, and
its cost (a token-by-token prefix comparison) depends on the request before, so a direct
request that followed another front's conversation was about 2 ms cheaper than one that
followed its own (bench/RESULTS.md).

    python bench/overhead.py [--n 300] [--front all|messages|responses|chat ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field

import httpx
import trio

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))

from bench.common import ROOT, free_port, process, summary, timed_stream
from lmsd.protocol.anthropic.items import conversation
from lmsd.protocol.anthropic.request import validate_messages_request
from lmsd.protocol.chat.front import validate_chat_request
from lmsd.protocol.chat.request import build_chat_request
from lmsd.protocol.plan import plan_turn
from lmsd.protocol.responses.front import parse_request
from tests.support.fixtures import codex_request

MODEL = "qwen/qwen3-coder-30b"
FRONTS = ("messages", "responses", "chat")
CODEX_CAPTURE = ("resp-resume", 4)
#: Set by httpx, or a secret: not replayed.
SKIPPED_HEADERS = {"host", "content-length", "accept-encoding", "authorization"}


@dataclass
class Front:
    """One front: what goes through lmsd (``path``, ``body``, ``headers``, the first-token
    ``marker``), the Responses body lmsd makes of it (``upstream``, sent direct), and the
    (TTFT, total) of each run on both paths."""

    name: str
    title: str
    path: str
    body: bytes
    marker: bytes
    upstream: bytes
    headers: dict[str, str] = field(default_factory=dict)
    results: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: {"direct": [], "lmsd": []})

    def header(self, n: int) -> str:
        return (f"request: {len(self.body)} bytes {self.title}, {len(self.upstream)} bytes "
                f"Responses; {n} alternating runs each")


def load_request() -> dict:
    data = json.loads((ROOT / "tests/fixtures/large_request.json").read_text())
    return data["requests"][0]["body"]


def messages_front() -> Front:
    anthropic_body = load_request()
    anthropic_body["stream"] = True
    req = validate_messages_request(anthropic_body)
    upstream = plan_turn(conversation(req), model=MODEL, nodes=()).full
    return Front("messages", "Anthropic", "/v1/messages", json.dumps(anthropic_body).encode(),
                 b"content_block_delta", json.dumps(upstream).encode())


def responses_front() -> Front:
    captured = codex_request(*CODEX_CAPTURE)
    body = captured["body"]
    headers = {k: v for k, v in captured["headers"] if k.lower() not in SKIPPED_HEADERS}
    upstream = plan_turn(parse_request(body).conversation, model=MODEL, nodes=()).full
    return Front("responses", "Codex", "/v1/responses", json.dumps(body).encode(), b".delta",
                 json.dumps(upstream).encode(), headers)


def chat_front() -> Front:
    """The Claude Code conversation as a chat client sends it (the chat codec's upstream
    face renders the pivot exactly as chat clients write it)."""
    anthropic_body = load_request()
    conv = conversation(validate_messages_request(anthropic_body))
    body = build_chat_request(conv, model=MODEL)
    upstream = plan_turn(validate_chat_request(body).conversation, model=MODEL, nodes=()).full
    # the first argument delta: the opening tool_calls chunk has {"name": ..., "arguments": ""}
    return Front("chat", "chat completions", "/v1/chat/completions", json.dumps(body).encode(),
                 b'{"arguments":', json.dumps(upstream).encode())


BUILDERS = {"messages": messages_front, "responses": responses_front, "chat": chat_front}


def report(front: Front, n: int) -> tuple[float, float]:
    """The front's table in the format of the first version; (added TTFT, added total)."""
    print(front.header(n))
    print(f"{'path':8} {'ttft p50':>10} {'ttft p99':>10} {'total p50':>10} {'total p99':>10}")
    figures = {}
    for name, runs in front.results.items():
        ttft50, ttft99 = summary([r[0] for r in runs])
        tot50, tot99 = summary([r[1] for r in runs])
        figures[name] = (ttft50, tot50)
        print(f"{name:8} {ttft50:9.2f}ms {ttft99:9.2f}ms {tot50:9.2f}ms {tot99:9.2f}ms")
    d_ttft, d_tot = figures["direct"]
    l_ttft, l_tot = figures["lmsd"]
    print(f"overhead: ttft +{l_ttft - d_ttft:.2f} ms ({l_ttft / d_ttft:.2f}x), "
          f"total +{l_tot - d_tot:.2f} ms ({l_tot / d_tot:.2f}x)")
    return l_ttft - d_ttft, l_tot - d_tot


async def main(n: int, names: list[str]) -> None:
    fronts = [BUILDERS[name]() for name in names]
    emu_port, lmsd_port, admin_port = free_port(), free_port(), free_port()
    emu_url = f"http://127.0.0.1:{emu_port}"
    lmsd_url = f"http://127.0.0.1:{lmsd_port}"
    state = ROOT / "bench/out" / f"state-overhead-{time.time():.0f}"
    py = sys.executable
    async with (
        process([py, "-m", "tests.emulator", "--port", str(emu_port), "--context-length",
                 "262144"], f"{emu_url}/v1/models"),
        process([py, "-m", "lmsd", "serve", "--listen", f"127.0.0.1:{lmsd_port}",
                 "--admin-listen", f"127.0.0.1:{admin_port}", "--upstream", emu_url,
                 "--model", MODEL, "--state-dir", str(state), "--log-level", "warning"],
                f"{lmsd_url}/"),
    ):
        timeout = httpx.Timeout(60.0)
        async with httpx.AsyncClient(timeout=timeout) as client:
            def paths(front: Front) -> tuple[tuple, tuple]:
                direct = (f"{emu_url}/v1/responses", front.upstream, b".delta")
                proxied = (f"{lmsd_url}{front.path}", front.body, front.marker, front.headers)
                return direct, proxied

            for front in fronts:
                direct, proxied = paths(front)
                for _ in range(10):  # warm up both paths
                    await timed_stream(client, *direct)
                    await timed_stream(client, *proxied)
                for _ in range(n):
                    front.results["direct"].append(await timed_stream(client, *direct))
                    front.results["lmsd"].append(await timed_stream(client, *proxied))
    added = {}
    for i, front in enumerate(fronts):
        if len(fronts) > 1:
            print(("\n" if i else "") + f"== {front.path} ({front.name}) ==")
        added[front.name] = report(front, n)
    if len(fronts) > 1:
        print("\nadded by lmsd, p50: " + ", ".join(
            f"{name} ttft +{ttft:.2f} ms / total +{tot:.2f} ms"
            for name, (ttft, tot) in added.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--front", action="append", choices=("all", *FRONTS),
                        help="the fronts to measure (repeatable; default all)")
    args = parser.parse_args()
    chosen = args.front or ["all"]
    selected = list(FRONTS) if "all" in chosen else list(dict.fromkeys(chosen))
    trio.run(main, args.n, selected)
