"""What lmsd adds to each request: a captured ~78 KB Claude Code request, sent straight
to the emulator's /v1/responses (as its translated Responses body) and through lmsd,
alternating, N times each. Prints median and p99 time to first token and total time,
and lmsd's overhead in ms and as a ratio.

    python bench/overhead.py [--n 300]
"""

from __future__ import annotations

import argparse
import json
import sys

import httpx
import trio

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))

from bench.common import ROOT, free_port, process, summary, timed_stream
from lmsd.protocol.anthropic.items import conversation
from lmsd.protocol.anthropic.request import validate_messages_request
from lmsd.protocol.plan import plan_turn

MODEL = "qwen/qwen3-coder-30b"


def load_request() -> dict:
    data = json.loads((ROOT / "tests/fixtures/large_request.json").read_text())
    return data["requests"][0]["body"]


async def main(n: int) -> None:
    anthropic_body = load_request()
    anthropic_body["stream"] = True
    req = validate_messages_request(anthropic_body)
    responses_body = plan_turn(conversation(req), model=MODEL, nodes=()).full
    raw_anthropic = json.dumps(anthropic_body).encode()
    raw_responses = json.dumps(responses_body).encode()
    emu_port, lmsd_port, admin_port = free_port(), free_port(), free_port()
    emu_url = f"http://127.0.0.1:{emu_port}"
    lmsd_url = f"http://127.0.0.1:{lmsd_port}"
    py = sys.executable
    async with (
        process([py, "-m", "tests.emulator", "--port", str(emu_port), "--context-length",
                 "262144"], f"{emu_url}/v1/models"),
        process([py, "-m", "lmsd", "serve", "--listen", f"127.0.0.1:{lmsd_port}",
                 "--admin-listen", f"127.0.0.1:{admin_port}", "--upstream", emu_url,
                 "--model", MODEL, "--log-level", "warning"], f"{lmsd_url}/"),
    ):
        timeout = httpx.Timeout(60.0)
        async with httpx.AsyncClient(timeout=timeout) as client:
            direct = (f"{emu_url}/v1/responses", raw_responses, b".delta")
            proxied = (f"{lmsd_url}/v1/messages", raw_anthropic, b"content_block_delta")
            for _ in range(10):  # warm up both paths
                await timed_stream(client, *direct)
                await timed_stream(client, *proxied)
            results: dict[str, list[tuple[float, float]]] = {"direct": [], "lmsd": []}
            for _ in range(n):
                results["direct"].append(await timed_stream(client, *direct))
                results["lmsd"].append(await timed_stream(client, *proxied))
    print(f"request: {len(raw_anthropic)} bytes Anthropic, {len(raw_responses)} bytes "
          f"Responses; {n} alternating runs each")
    print(f"{'path':8} {'ttft p50':>10} {'ttft p99':>10} {'total p50':>10} {'total p99':>10}")
    figures = {}
    for name, runs in results.items():
        ttft50, ttft99 = summary([r[0] for r in runs])
        tot50, tot99 = summary([r[1] for r in runs])
        figures[name] = (ttft50, tot50)
        print(f"{name:8} {ttft50:9.2f}ms {ttft99:9.2f}ms {tot50:9.2f}ms {tot99:9.2f}ms")
    d_ttft, d_tot = figures["direct"]
    l_ttft, l_tot = figures["lmsd"]
    print(f"overhead: ttft +{l_ttft - d_ttft:.2f} ms ({l_ttft / d_ttft:.2f}x), "
          f"total +{l_tot - d_tot:.2f} ms ({l_tot / d_tot:.2f}x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300)
    trio.run(main, parser.parse_args().n)
