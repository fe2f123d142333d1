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

``--otel`` measures what tracing costs, same run, interleaved: lmsd with tracing off (no
``OTEL_*``: its hooks are one call each), on (exporting to a sink in this process), and
with ``--base DIR`` a checkout without the hooks (e.g. ``git worktree add DIR <commit>``).

    python bench/overhead.py --otel [--base DIR] [--n 200] [--front messages]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

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


class Sink:
    """An OTLP/HTTP endpoint that accepts every export (200) and counts its bytes."""

    def __init__(self) -> None:
        self.posts = self.bytes = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                sink.posts += 1
                sink.bytes += len(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"


async def otel_main(n: int, names: list[str], base: Path | None) -> None:
    """Direct, lmsd off, lmsd on (and lmsd from ``base``), interleaved request by request."""
    sink = Sink()
    quiet = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    variants: dict[str, tuple[dict[str, str], Path]] = {
        "off": (quiet, ROOT),
        "on": (dict(quiet, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=sink.url), ROOT)}
    if base is not None:
        variants["base"] = (quiet, base.resolve())
    emu_port = free_port()
    emu_url = f"http://127.0.0.1:{emu_port}"
    state = ROOT / "bench/out" / f"state-otel-{time.time():.0f}"
    py = sys.executable
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(process(
            [py, "-m", "tests.emulator", "--port", str(emu_port), "--context-length",
             "262144"], f"{emu_url}/v1/models"))
        urls = {}
        for name, (env, root) in variants.items():
            port, admin = free_port(), free_port()
            urls[name] = f"http://127.0.0.1:{port}"
            await stack.enter_async_context(process(
                [py, "-m", "lmsd", "serve", "--listen", f"127.0.0.1:{port}", "--admin-listen",
                 f"127.0.0.1:{admin}", "--upstream", emu_url, "--model", MODEL, "--state-dir",
                 str(state / name), "--log-level", "warning"], f"{urls[name]}/",
                env=env, root=root))
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=60.0))
        for front in (BUILDERS[name]() for name in names):
            runs: dict[str, list[tuple[float, float]]] = {"direct": [], **{v: [] for v in urls}}
            for i in range(10 + n):  # the first 10: warm-up
                timed = [("direct", (f"{emu_url}/v1/responses", front.upstream, b".delta"))]
                timed += [(v, (f"{u}{front.path}", front.body, front.marker, front.headers))
                          for v, u in urls.items()]
                for name, args in timed[i % len(timed):] + timed[:i % len(timed)]:
                    result = await timed_stream(client, *args)
                    if i >= 10:
                        runs[name].append(result)
            print(f"== {front.path}: {n} runs per path, interleaved ==")
            print(f"{'path':8} {'ttft p50':>10} {'ttft p99':>10} {'total p50':>10} "
                  f"{'total p99':>10}")
            p50 = {}
            for name, got in runs.items():
                ttft50, ttft99 = summary([r[0] for r in got])
                tot50, tot99 = summary([r[1] for r in got])
                p50[name] = (ttft50, tot50)
                print(f"{name:8} {ttft50:9.2f}ms {ttft99:9.2f}ms {tot50:9.2f}ms "
                      f"{tot99:9.2f}ms")
            for name in ("on", "base"):
                if name in p50:
                    print(f"{name} - off, p50: ttft {p50[name][0] - p50['off'][0]:+.2f} ms, "
                          f"total {p50[name][1] - p50['off'][1]:+.2f} ms")
    print(f"sink: {sink.posts} exports, {sink.bytes} bytes (tracing was on for 'on')")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--front", action="append", choices=("all", *FRONTS),
                        help="the fronts to measure (repeatable; default all)")
    parser.add_argument("--otel", action="store_true",
                        help="tracing off against on (and --base), same run")
    parser.add_argument("--base", type=Path, help="with --otel: a checkout without tracing")
    args = parser.parse_args()
    chosen = args.front or ["all"]
    selected = list(FRONTS) if "all" in chosen else list(dict.fromkeys(chosen))
    if args.otel:
        trio.run(otel_main, args.n, selected, args.base)
    else:
        trio.run(main, args.n, selected)
