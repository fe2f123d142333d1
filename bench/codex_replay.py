"""Replay a 30-turn Codex CLI 0.171 tool loop through lmsd's ``/v1/responses``, with
chaining on and forced off.

The thread starts from a captured Codex request (``tests/fixtures/codex_0171.json``,
``resp-resume`` request 4: Codex's default tool set with the ``multi_agent_v1`` namespace
and ``web_search``, the 17 KB base prompt and the skills as leading ``developer`` messages,
the environment context, the headers with ``session-id``) cut to its first user prompt.
Then it grows as Codex grows it: every request resends the whole thread with
``store: false``, every earlier output item echoed back with its ids and ``status`` (and
reasoning with ``encrypted_content: null``), and each ``exec_command`` call followed by its
``function_call_output`` (with Codex's ``fco_`` id and its output framing). The emulator
(in this process) answers with reasoning, a short message and an ``exec_command`` call, 29
times, then "done"; it charges an artificial prefill cost per uncached token and models
LM Studio's prefix cache.

Prints per turn, for both runs: the input items and tokens lmsd sent upstream (the
emulator's record of each request), the tokens prefilled and the time to first token;
then the totals, the ratio chained / full, and lmsd's own chain decisions (its
``chain.decision`` events), with the reason of any miss.

    python bench/codex_replay.py [--turns 30] [--prefill-us-per-token 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, free_port, process
from tests.emulator import Call, Emulator, Reasoning, Reply, Text, serve_emulator
from tests.support.fixtures import codex_request

MODEL = "qwen/qwen3-coder-30b"  # the emulator's loaded model
CAPTURE = ("resp-resume", 4)
#: Set by httpx, or a secret: not replayed.
SKIPPED_HEADERS = {"host", "content-length", "accept-encoding", "authorization"}
PROMPT = ("Go through every module under src/, one at a time: list it, read its main file, "
          "and tell me which ones lack tests. Then say done.")


def first_request() -> tuple[dict[str, str], dict[str, Any]]:
    """The captured request's headers and body, cut to the first user prompt."""
    captured = codex_request(*CAPTURE)
    headers = {k: v for k, v in captured["headers"] if k.lower() not in SKIPPED_HEADERS}
    body = captured["body"]
    body["model"] = MODEL
    cut = next(i for i, item in enumerate(body["input"])
               if item.get("role") == "user" and "environment_context" not in
               item["content"][0]["text"])
    prompt = dict(body["input"][cut], content=[{"type": "input_text", "text": PROMPT}])
    body["input"] = [*body["input"][:cut], prompt]
    return headers, body


def command(n: int) -> str:
    return f"ls -la src/module_{n}" if n % 2 == 0 else f"sed -n 1,40p src/module_{n}/core.py"


def command_output(n: int) -> str:
    """What the command prints: a directory listing or the first 40 lines of a file."""
    if n % 2 == 0:
        return "".join(f"-rw-r--r-- 1 dev dev {1000 + 37 * i:6d} Nov 21 10:{i:02d} "
                       f"file_{n}_{i}.py\n" for i in range(12))
    lines = [f'"""Module {n}: the core of part {n}."""', "", "from __future__ import annotations",
             "", "import json", "from dataclasses import dataclass", ""]
    for k in range(5):
        lines += ["@dataclass", f"class Record{k}:", f'    """One record of kind {k}."""', "",
                  "    name: str", f"    size: int = {k * 10}", ""]
    return "\n".join(lines[:40]) + "\n"


def exec_output(n: int) -> str:
    """Codex's framing of an ``exec_command`` result (as in the capture)."""
    out = command_output(n)
    return (f"Chunk ID: {n * 2654435761 % 16**6:06x}\nWall time: 0.0{n % 10}31 seconds\n"
            f"Process exited with code 0\nOriginal token count: {len(out) // 4}\n"
            f"Output:\n{out}")


def script(turns: int) -> list[Reply]:
    replies = [Reply(Reasoning(f"Module {n}: I need to look at it before judging its tests."),
                     Text(f"Looking at module {n}."),
                     Call("exec_command", {"cmd": command(n)}))
               for n in range(turns - 1)]
    replies.append(Reply(Text("Modules 1, 3 and 8 lack tests. done")))
    return replies


def codex_echo(item: dict[str, Any]) -> dict[str, Any]:
    """An output item as Codex 0.171 puts it in its next request (its own serialization:
    ids and ``status`` kept, reasoning with ``encrypted_content: null``)."""
    kind = item["type"]
    if kind == "reasoning":
        return {"type": "reasoning", "id": item["id"], "summary": item.get("summary", []),
                "content": item.get("content"), "encrypted_content": None}
    if kind == "function_call":
        return {"type": "function_call", "status": "completed", "id": item["id"],
                "name": item["name"], "arguments": item["arguments"],
                "call_id": item["call_id"]}
    if kind == "message":
        return {"type": "message", "status": "completed", "id": item["id"], "role": "assistant",
                "content": [{"type": "output_text", "text": part["text"], "annotations": []}
                            for part in item["content"]]}
    raise ValueError(f"unexpected output item {kind}")


async def turn(client: httpx.AsyncClient, url: str, headers: dict[str, str],
               body: dict[str, Any]) -> tuple[float, list[dict[str, Any]]]:
    """One Codex request: (time to the first delta, the output_item.done items)."""
    t0 = time.perf_counter()
    ttft = 0.0
    done: list[dict[str, Any]] = []
    async with client.stream("POST", url, content=json.dumps(body).encode(),
                             headers=headers) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = json.loads(line[6:])
            if not ttft and data["type"].endswith(".delta"):
                ttft = time.perf_counter() - t0
            if data["type"] == "response.output_item.done":
                done.append(data["item"])
            elif data["type"] in ("response.failed", "response.incomplete", "error"):
                raise RuntimeError(f"turn failed: {data}")
    return ttft, done


def decisions(log: Path) -> list[dict[str, Any]]:
    """lmsd's ``chain.decision`` events, in order."""
    found = []
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == "chain.decision":
            found.append(record)
    return found


async def replay(turns: int, chaining: bool, prefill: float) -> tuple[list[dict], list[dict]]:
    emu = Emulator(prefill_seconds_per_token=prefill, token_delay=0.0)
    emu.models[MODEL].context_length = 262144
    rows: list[dict[str, Any]] = []
    out = ROOT / "bench/out"
    out.mkdir(parents=True, exist_ok=True)
    stamp = f"{'chained' if chaining else 'full'}-{time.time():.0f}"
    log = out / f"codex-replay-{stamp}.log"
    async with trio.open_nursery() as nursery:
        emu_url = await serve_emulator(nursery, emu)
        emu.script(*script(turns))
        port, admin = free_port(), free_port()
        args = [sys.executable, "-m", "lmsd", "serve", "--listen", f"127.0.0.1:{port}",
                "--admin-listen", f"127.0.0.1:{admin}", "--upstream", emu_url,
                "--state-dir", str(out / f"state-codex-{stamp}"), "--log-level", "info",
                "--log-format", "json", "--no-watch",
                "--chaining" if chaining else "--no-chaining"]
        with log.open("w") as sink:
            async with (process(args, f"http://127.0.0.1:{admin}/healthz", output=sink),
                        httpx.AsyncClient(timeout=60) as client):
                headers, body = first_request()
                items = list(body["input"])
                for n in range(turns):
                    sent = {**body, "input": items}
                    ttft, done = await turn(client, f"http://127.0.0.1:{port}/v1/responses",
                                            headers, sent)
                    record = emu.generations[-1]
                    upstream = record.body
                    rows.append({
                        "codex_items": len(items),
                        "codex_bytes": len(json.dumps(sent)),
                        "items": len(upstream["input"]),
                        "sent": emu.count_tokens(upstream["input"]),
                        "body": emu.count_tokens(upstream["input"],
                                                 instructions=upstream.get("instructions"),
                                                 tools=upstream.get("tools") or ()),
                        "bytes": len(json.dumps(upstream)),
                        "context": record.input_tokens,
                        "prefill": record.input_tokens - record.cached_tokens,
                        "ttft": ttft,
                        "chained": float(record.previous_response_id is not None),
                    })
                    items += [codex_echo(item) for item in done]
                    calls = [item for item in done if item["type"] == "function_call"]
                    if not calls:
                        break
                    items += [{"type": "function_call_output",
                               "id": f"fco_{uuid.uuid4()}", "call_id": call["call_id"],
                               "output": exec_output(n)} for call in calls]
        nursery.cancel_scope.cancel()
    return rows, decisions(log)


def total(rows: list[dict[str, Any]], key: str) -> float:
    return sum(r[key] for r in rows)


async def main(turns: int, prefill_us: float) -> None:
    prefill = prefill_us / 1e6
    chained, chained_log = await replay(turns, True, prefill)
    full, _ = await replay(turns, False, prefill)
    headers, body = first_request()
    print(f"{len(chained)}-turn Codex CLI 0.171 tool loop ({CAPTURE[0]} request {CAPTURE[1]}: "
          f"{len(body['tools'])} tools, {len(body['input'])} items to start, "
          f"{len(json.dumps(body))} bytes), replayed as Codex resends it (store: false, "
          f"session-id {headers['session-id'][:8]}...); emulator prefill cost {prefill_us:g} us "
          f"per uncached token.")
    print("'items'/'input' = the input items lmsd sent upstream and their tokens (emulator "
          "tokenizer); 'body' adds instructions and tools, which both runs resend every turn; "
          "'prefill' = uncached tokens.")
    print(f"{'turn':>4} {'codex items':>11} | {'chained: items':>14} {'input':>6} {'body':>6} "
          f"{'prefill':>7} {'ttft ms':>7} | {'full: items':>11} {'input':>6} {'body':>6} "
          f"{'prefill':>7} {'ttft ms':>7}")
    for n, (c, f) in enumerate(zip(chained, full, strict=True), 1):
        print(f"{n:4d} {c['codex_items']:11d} | {c['items']:14d} {c['sent']:6d} {c['body']:6d} "
              f"{c['prefill']:7d} {c['ttft'] * 1000:7.1f} | {f['items']:11d} {f['sent']:6d} "
              f"{f['body']:6d} {f['prefill']:7d} {f['ttft'] * 1000:7.1f}")
    for label, key in (("input items sent", "items"), ("input tokens sent", "sent"),
                       ("whole-body tokens sent", "body"), ("upstream bytes", "bytes"),
                       ("tokens prefilled", "prefill")):
        c, f = total(chained, key), total(full, key)
        print(f"total {label + ':':24} chained {c:9.0f}, full {f:9.0f}, ratio {c / f:.3f}")
    ratio = total(chained, "sent") / total(full, "sent")
    print(f"issue 12's target (30 turns), input tokens chained <= 15% of full: {ratio:.1%}, "
          f"{'met' if ratio <= 0.15 else 'NOT met'}")
    ttft = {name: statistics.median(r["ttft"] for r in rows[1:]) * 1000
            for name, rows in (("chained", chained), ("full", full))}
    print(f"median TTFT, turns 2..{len(chained)}: chained {ttft['chained']:.1f} ms, full "
          f"{ttft['full']:.1f} ms, ratio {ttft['chained'] / ttft['full']:.2f}")
    print(f"Codex sent {total(chained, 'codex_bytes') / 1e6:.2f} MB over the thread "
          f"({chained[-1]['codex_items']} items on the last request)")
    hits = [d for d in chained_log if d.get("chained")]
    misses = [(n, d.get("miss")) for n, d in enumerate(chained_log, 1) if not d.get("chained")]
    print(f"turns chained upstream: {total(chained, 'chained'):.0f} of {len(chained)}; lmsd's "
          f"chain.decision: {len(hits)} hits, misses (turn, reason) {misses}")
    sent, whole = (sum(d.get(k) or 0 for d in chained_log) for k in ("items_sent", "items_full"))
    print(f"lmsd's own count (chain.decision items_sent / items_full): {sent} / {whole}, "
          f"ratio {sent / whole:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--prefill-us-per-token", type=float, default=50.0)
    args = parser.parse_args()
    trio.run(main, args.turns, args.prefill_us_per_token)
