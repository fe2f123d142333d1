"""Replay a 30-turn Claude Code tool loop through lmsd, with chaining on and forced off.

The loop starts from a captured Claude Code 2.1.329 request (its system prompt, 12 tools
and first user turn) and grows by one assistant tool call and one tool result per turn.
The emulator (in this process) charges an artificial prefill cost per uncached token
and models LM Studio's prefix cache. Prints, per turn and in total, the input tokens
lmsd sent upstream, the tokens LM Studio had to prefill, and the time to first token.

    python bench/session_replay.py [--turns 30] [--prefill-us-per-token 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anthropic
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, free_port, process
from tests.emulator import Call, Emulator, Reasoning, Reply, Text, serve_emulator

SESSION = "replay-session"


def first_request() -> dict[str, Any]:
    data = json.loads((ROOT / "tests/fixtures/basic_json.json").read_text())
    return data["requests"][0]["body"]


def script(turns: int) -> list[Reply]:
    replies = []
    for n in range(turns - 1):
        replies.append(Reply(
            Reasoning(f"Step {n}: I will look at the next part of the project."),
            Text(f"Checking part {n}."),
            Call("Bash", {"command": f"ls -la src/module_{n} && wc -l src/module_{n}/*.py",
                          "description": f"Inspect module {n}"}),
        ))
    replies.append(Reply(Text("All modules inspected: done.")))
    return replies


def tool_output(n: int) -> str:
    lines = [f"-rw-r--r-- 1 dev dev {1000 + 37 * i:6d} Nov 21 10:{i:02d} file_{n}_{i}.py"
             for i in range(12)]
    return "\n".join(lines) + f"\n  {sum(range(12)) * 17} total\n"


async def replay(turns: int, chaining: bool, prefill: float) -> list[dict[str, float]]:
    emu = Emulator(prefill_seconds_per_token=prefill, token_delay=0.0)
    rows: list[dict[str, float]] = []
    async with trio.open_nursery() as nursery:
        emu_url = await serve_emulator(nursery, emu)
        emu.script(*script(turns))
        port, admin = free_port(), free_port()
        args = [sys.executable, "-m", "lmsd", "serve", "--listen", f"127.0.0.1:{port}",
                "--admin-listen", f"127.0.0.1:{admin}", "--upstream", emu_url,
                "--state-dir", str(ROOT / "bench/out" / f"state-{chaining}-{time.time()}"),
                "--log-level", "warning", "--chaining" if chaining else "--no-chaining"]
        async with process(args, f"http://127.0.0.1:{admin}/healthz"):
            body = first_request()
            history = list(body["messages"])
            client = anthropic.AsyncAnthropic(base_url=f"http://127.0.0.1:{port}",
                                              api_key="x", max_retries=0)
            async with client:
                for n in range(turns):
                    t0 = time.perf_counter()
                    ttft = None
                    async with client.messages.stream(
                            model=body["model"], max_tokens=32000, system=body["system"],
                            tools=body["tools"], messages=history,
                            extra_headers={"X-Claude-Code-Session-Id": SESSION}) as stream:
                        async for event in stream:
                            if ttft is None and event.type == "content_block_delta":
                                ttft = time.perf_counter() - t0
                        message = await stream.get_final_message()
                    record = emu.generations[-1]
                    rows.append({
                        "sent": emu.count_tokens(record.body["input"]),
                        "context": record.input_tokens,
                        "prefill": record.input_tokens - record.cached_tokens,
                        "ttft": ttft or 0.0,
                        "chained": float("previous_response_id" in record.body),
                    })
                    content = [b.model_dump(exclude_none=True) for b in message.content]
                    history.append({"role": "assistant", "content": content})
                    uses = [b for b in content if b["type"] == "tool_use"]
                    if not uses:
                        break
                    history.append({"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": u["id"],
                         "content": tool_output(n), "is_error": False} for u in uses]})
        nursery.cancel_scope.cancel()
    return rows


async def main(turns: int, prefill_us: float) -> None:
    prefill = prefill_us / 1e6
    chained = await replay(turns, True, prefill)
    full = await replay(turns, False, prefill)
    print(f"{turns}-turn Claude Code tool loop; emulator prefill cost {prefill_us:g} us per "
          f"uncached token. 'input' = tokens of the input items lmsd sent (instructions and "
          f"tools are resent every turn on both runs); 'prefill' = uncached tokens.")
    print(f"{'turn':>4} | {'chained: input':>14} {'prefill':>8} {'ttft ms':>8} | "
          f"{'full: input':>11} {'prefill':>8} {'ttft ms':>8}")
    for n, (c, f) in enumerate(zip(chained, full, strict=True), 1):
        print(f"{n:4d} | {c['sent']:14.0f} {c['prefill']:8.0f} {c['ttft'] * 1000:8.1f} | "
              f"{f['sent']:11.0f} {f['prefill']:8.0f} {f['ttft'] * 1000:8.1f}")
    sums = {name: {k: sum(r[k] for r in rows) for k in ("sent", "prefill", "context")}
            for name, rows in (("chained", chained), ("full", full))}
    ttft = {name: statistics.median(r["ttft"] for r in rows[1:]) * 1000
            for name, rows in (("chained", chained), ("full", full))}
    print(f"total input tokens sent: chained {sums['chained']['sent']:.0f}, full "
          f"{sums['full']['sent']:.0f}, ratio {sums['chained']['sent'] / sums['full']['sent']:.3f}")
    print(f"total tokens prefilled:  chained {sums['chained']['prefill']:.0f}, full "
          f"{sums['full']['prefill']:.0f}, ratio "
          f"{sums['chained']['prefill'] / sums['full']['prefill']:.3f}")
    print(f"median TTFT, turns 2..{len(chained)}: chained {ttft['chained']:.1f} ms, full "
          f"{ttft['full']:.1f} ms, ratio {ttft['chained'] / ttft['full']:.2f}")
    print(f"turns chained: {sum(r['chained'] for r in chained):.0f} of {len(chained)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--prefill-us-per-token", type=float, default=50.0)
    args = parser.parse_args()
    trio.run(main, args.turns, args.prefill_us_per_token)
