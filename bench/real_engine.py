"""Does history length stop costing? A 20-turn Claude-Code-shaped tool loop through lmsd
to a real llama.cpp engine (llama-cpp-python, or llama.cpp's own llama-server with
``--engine llama-server``; tiny generated model, one slot).

Three runs, each on a fresh engine:
- lmsd: prefix-stable rendering, so each turn prefills only what is new;
- lmsd with prefix stability broken: the first system line changes every request (as
  older Claude Code versions' billing header did) and lmsd is told not to strip it;
- the engine directly, with the same chat bodies lmsd would send.

Prints time to first token per turn and TTFT(turn 20) / TTFT(turn 2) for each.

    python bench/real_engine.py [--turns 20] [--engine llama-cpp-python|llama-server]
    python bench/real_engine.py --repeat 6 [--engine ...]

``--repeat K`` settles why turn 1 once looked a second slower through lmsd: K pairs of
turn 1 alone, each on a fresh engine, direct and lmsd alternating which goes first. Per
run: the client's TTFT, the engine's own prompt time (its log), for lmsd its request.end
``ttft_ms``/``upstream_ms`` (``--log-format json``) and the CPU it burnt during the turn,
and a second cold prefill of the same size on the same engine (another system prompt
start): if turn 1 is slower than that one, the engine's first request pays a warm-up.

On llama-server the forced Bash call needs the logit biases of ``FORCED_TOOL_CALLS``, and
lmsd sends the named choice as ``required`` with Bash alone, so its prompt has one tool.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import secrets
import statistics
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, free_port, process
from lmsd.protocol.anthropic.items import conversation
from lmsd.protocol.anthropic.request import validate_messages_request
from lmsd.protocol.chat.request import build_chat_request
from tests.engine.llama_server import start_llama_server
from tests.engine.server import MODEL_ALIAS, start_engine
from tests.support.processes import wait_until_answering

TOOL_OUTPUT_LINES = 3  # ~130 tokens a turn: ~5.4k tokens at turn 1, ~8k by turn 20
TOOLS = ("Edit", "Read", "Write", "ListAgents", "Skill", "ToolSearch")


def base_request() -> dict[str, Any]:
    """Claude Code's shape: its captured system prompt and real tool definitions (a
    large, stable start), then a short conversation that grows by one tool call and one
    tool result a turn."""
    captured = json.loads((ROOT / "tests/fixtures/basic_json.json").read_text())
    first = captured["requests"][0]["body"]
    bare = json.loads((ROOT / "tests/fixtures/bare.json").read_text())["requests"][0]["body"]
    bash = {"name": "Bash", "description": "Run a shell command", "input_schema": {
        "type": "object", "properties": {"command": {  # an enum keeps the call short
            "type": "string", "enum": ["ls -la", "git status"]}}, "required": ["command"]}}
    return {"model": first["model"], "system": first["system"],
            "tools": [bash, *(t for t in first["tools"] if t["name"] in TOOLS)],
            "messages": bare["messages"][:1], "max_tokens": 24, "stream": True,
            "tool_choice": {"type": "tool", "name": "Bash"}}


def tool_output(turn: int) -> str:
    return "\n".join(f"-rw-r--r-- 1 dev dev {1000 + 37 * i:6d} Nov 21 10:{i:02d} "
                     f"src/module_{turn}/file_{i}.py" for i in range(TOOL_OUTPUT_LINES))


def vary_first_line(body: dict[str, Any]) -> None:
    body["system"][0]["text"] = ("x-anthropic-billing-header: cc_version=2.1.37.0d9; "
                                 f"cc_entrypoint=cli; cch={secrets.token_hex(3)};")


async def lmsd_turn(http: httpx.AsyncClient, url: str, body: dict[str, Any]
                    ) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    ttft = None
    raw = b""
    async with http.stream("POST", f"{url}/v1/messages", json=body) as response:
        async for chunk in response.aiter_raw():
            if ttft is None and b"content_block_start" in chunk:  # as direct: the name
                ttft = time.perf_counter() - t0
            raw += chunk
    content: list[dict[str, Any]] = []
    for frame in raw.decode().split("\n\n"):
        data = next((line[6:] for line in frame.split("\n") if line.startswith("data: ")), None)
        event = json.loads(data) if data else {}
        if event.get("type") == "content_block_start":
            content.append(dict(event["content_block"], _json=""))
        elif event.get("type") == "content_block_delta" and "partial_json" in event["delta"]:
            content[-1]["_json"] += event["delta"]["partial_json"]
        elif event.get("type") == "content_block_delta" and "text" in event["delta"]:
            content[-1]["text"] += event["delta"]["text"]
    for block in content:
        raw_json = block.pop("_json")
        if block["type"] == "tool_use":
            try:
                block["input"] = json.loads(raw_json) if raw_json else {}
            except ValueError:
                block["input"] = {"command": "ls -la"}
    return ttft or 0.0, {"role": "assistant", "content": content}


async def direct_turn(http: httpx.AsyncClient, url: str, body: dict[str, Any],
                      llama_server: bool = False) -> tuple[float, dict[str, Any]]:
    chat = build_chat_request(conversation(validate_messages_request(body)),
                              model=MODEL_ALIAS, named_as_required=llama_server)
    t0 = time.perf_counter()
    ttft = None
    raw = b""
    async with http.stream("POST", f"{url}/v1/chat/completions", json=chat) as response:
        async for chunk in response.aiter_raw():
            if ttft is None and (b'"tool_calls"' in chunk or b'"content": "' in chunk
                                 or b'"content":"' in chunk):
                ttft = time.perf_counter() - t0
            raw += chunk
    args = ""
    for line in raw.decode().split("\n"):
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices") or ():
                for call in (choice.get("delta") or {}).get("tool_calls") or ():
                    args += (call.get("function") or {}).get("arguments") or ""
    try:
        tool_input = json.loads(args)
    except ValueError:
        tool_input = {"command": "ls -la"}
    return ttft or 0.0, {"role": "assistant", "content": [
        {"type": "tool_use", "id": f"call_{secrets.token_hex(4)}", "name": "Bash",
         "input": tool_input}]}


async def replay(turns: int, mode: str, engine_kind: str) -> list[float]:
    ttfts = []
    llama_server = engine_kind == "llama-server"
    async with trio.open_nursery() as nursery:
        if llama_server:
            engine = (await start_llama_server(nursery, n_ctx=16384,
                                               forced_tool_calls=True)).url
        else:
            engine = await start_engine(nursery, n_ctx=16384)
        url = engine
        if mode != "direct":
            port, admin = free_port(), free_port()
            args = [sys.executable, "-m", "lmsd", "serve", "--listen", f"127.0.0.1:{port}",
                    "--admin-listen", f"127.0.0.1:{admin}", "--upstream", engine,
                    "--model", MODEL_ALIAS, "--upstream-api", "chat", "--no-watch",
                    "--log-level", "warning",
                    "--state-dir", str(ROOT / "bench/out" / f"engine-{time.time()}")]
            if mode == "broken":
                args.append("--no-strip-billing-header")
            lmsd = process(args, f"http://127.0.0.1:{admin}/healthz")
            await lmsd.__aenter__()
            url = f"http://127.0.0.1:{port}"
        body = base_request()
        history = list(body["messages"])
        # No keep-alive: llama-server closes the connection after every streamed answer.
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=600, limits=no_reuse) as http:
            for turn in range(turns):
                request = copy.deepcopy(dict(body, messages=history))
                if mode == "broken":
                    vary_first_line(request)
                if mode == "direct":
                    ttft, assistant = await direct_turn(http, url, request, llama_server)
                else:
                    ttft, assistant = await lmsd_turn(http, url, request)
                ttfts.append(ttft)
                uses = [b for b in assistant["content"] if b["type"] == "tool_use"]
                history = [*history, assistant, {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": u["id"], "content":
                     tool_output(turn)} for u in uses] or "go on"}]
                print(f"  {mode:7} turn {turn + 1:2d}: TTFT {ttft * 1000:8.1f} ms", flush=True)
        if mode != "direct":
            await lmsd.__aexit__(None, None, None)
        nursery.cancel_scope.cancel()
    return ttfts


async def main(turns: int, engine: str) -> None:
    results = {mode: await replay(turns, mode, engine)
               for mode in ("lmsd", "broken", "direct")}
    print(f"\nTTFT per turn (ms); history grows to about 8k tokens by turn {turns}")
    print(f"{'turn':>4} {'lmsd':>9} {'broken':>9} {'direct':>9}")
    for n in range(turns):
        print(f"{n + 1:4d} " + " ".join(f"{results[m][n] * 1000:9.1f}"
                                       for m in ("lmsd", "broken", "direct")))
    for mode, ttfts in results.items():
        print(f"{mode:7}: TTFT(turn {turns}) / TTFT(turn 2) = {ttfts[-1] / ttfts[1]:.2f}"
              f"  (turn 1 {ttfts[0] * 1000:.0f} ms, turn 2 {ttfts[1] * 1000:.0f} ms, "
              f"turn {turns} {ttfts[-1] * 1000:.0f} ms)")


PROMPT_EVAL = re.compile(rb"prompt eval time = +([\d.]+) ms / +(\d+) tokens")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU a process has used so far (Linux /proc)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def prompt_evals(log: Path) -> list[tuple[float, int]]:
    """(ms, tokens) of every prompt eval the engine logged (llama-server's slot lines,
    llama-cpp-python's llama_perf lines: the same words)."""
    text = log.read_bytes() if log.exists() else b""
    return [(float(ms), int(n)) for ms, n in PROMPT_EVAL.findall(text)]


async def turn_one(mode: str, engine_kind: str, logs: Path, tag: str) -> dict[str, Any]:
    """Turn 1, then a second cold prompt of the same size, on a fresh engine."""
    engine_log = logs / f"{tag}-{mode}-engine.log"
    row: dict[str, Any] = {"mode": mode, "run": tag, "load1": os.getloadavg()[0]}
    async with trio.open_nursery() as nursery:
        t0 = time.perf_counter()
        engine_pid = None
        if engine_kind == "llama-server":
            server = await start_llama_server(nursery, n_ctx=16384, forced_tool_calls=True,
                                              log_path=engine_log)
            engine, engine_pid = server.url, server.process.pid if server.process else None
        else:
            os.environ["LMSD_ENGINE_LOG"] = str(engine_log)  # start_engine reads it
            engine = await start_engine(nursery, n_ctx=16384)
        row["engine_start_s"] = round(time.perf_counter() - t0, 2)
        url, pid = engine, None
        events = logs / f"{tag}-{mode}-lmsd.jsonl"
        async with AsyncExitStack() as stack:
            out = stack.enter_context(open(events, "w"))  # noqa: SIM115
            if mode == "lmsd":
                port, admin = free_port(), free_port()
                t0 = time.perf_counter()
                url = f"http://127.0.0.1:{port}"
                pid = (await stack.enter_async_context(process(
                    [sys.executable, "-m", "lmsd", "serve", "--listen", f"127.0.0.1:{port}",
                     "--admin-listen", f"127.0.0.1:{admin}", "--upstream", engine,
                     "--model", MODEL_ALIAS, "--upstream-api", "chat", "--no-watch",
                     "--log-level", "info", "--log-format", "json",
                     "--state-dir", str(logs / f"{tag}-state")],
                    f"http://127.0.0.1:{admin}/healthz", output=out))).pid
                await wait_until_answering(f"{url}/v1/models")  # not another's admin port
                row["lmsd_start_s"] = round(time.perf_counter() - t0, 2)
            body = base_request()
            second = copy.deepcopy(body)  # same size, nothing in common past the start
            second["system"][1]["text"] = second["system"][1]["text"].replace(
                "You are a Claude agent", "You are another agent", 1)
            no_reuse = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(timeout=600, limits=no_reuse) as http:
                for name, request in (("turn1", body), ("cold2", second)):
                    cpu = cpu_seconds(pid), cpu_seconds(engine_pid)
                    if mode == "direct":
                        ttft, _ = await direct_turn(http, url, request,
                                                    engine_kind == "llama-server")
                    else:
                        ttft, _ = await lmsd_turn(http, url, request)
                    row[f"{name}_ttft_ms"] = round(ttft * 1000, 1)
                    row[f"{name}_lmsd_cpu_s"] = round(cpu_seconds(pid) - cpu[0], 3)
                    row[f"{name}_engine_cpu_s"] = round(cpu_seconds(engine_pid) - cpu[1], 3)
        nursery.cancel_scope.cancel()
    evals = prompt_evals(engine_log)
    for name, (ms, n) in zip(("turn1", "cold2"), evals[-2:], strict=False):
        row[f"{name}_prompt_ms"], row[f"{name}_prompt_tokens"] = ms, n
        # the rest: HTTP, the first tokens until a tool call shows, and lmsd if there
        row[f"{name}_rest_ms"] = round(row[f"{name}_ttft_ms"] - ms, 1)
    ends = [json.loads(line) for line in events.read_text().splitlines()
            if '"request.end"' in line]
    for name, end in zip(("turn1", "cold2"), ends, strict=False):
        row[f"{name}_lmsd_ttft_ms"] = end.get("ttft_ms")
        row[f"{name}_upstream_ms"] = end.get("upstream_ms")
        # before lmsd's exchange starts (read, validate, place, plan) and after its first
        # output (to the client): what request.end's ttft_ms does not see
        row[f"{name}_outside_exchange_ms"] = round(row[f"{name}_ttft_ms"] - end["ttft_ms"], 1)
        # from the engine's first byte (role chunk) to lmsd's first output: decoding
        row[f"{name}_after_first_byte_ms"] = round(end["ttft_ms"] - end["upstream_ms"], 1)
    return row


async def repeat_turn_one(k: int, engine_kind: str) -> None:
    logs = ROOT / "bench/out" / f"turn-one-{engine_kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    logs.mkdir(parents=True)
    rows = []
    for i in range(k):
        order = ("direct", "lmsd") if i % 2 == 0 else ("lmsd", "direct")
        for position, mode in enumerate(order):
            row = await turn_one(mode, engine_kind, logs, f"{i}{'ab'[position]}")
            row["first_in_pair"] = position == 0
            rows.append(row)
            print("  " + ", ".join(f"{key} {value}" for key, value in row.items()), flush=True)
    (logs / "runs.json").write_text(json.dumps(rows, indent=1))

    def median(key: str, **where: Any) -> float | None:
        values = [r[key] for r in rows if key in r and r[key] is not None
                  and all(r.get(w) == v for w, v in where.items())]
        return round(statistics.median(values), 1) if values else None

    print(f"\nturn 1 on {engine_kind}, medians of {k} fresh engines per mode (ms; CPU in s)")
    keys = ("turn1_ttft_ms", "turn1_prompt_ms", "turn1_rest_ms", "cold2_ttft_ms",
            "cold2_prompt_ms", "cold2_rest_ms", "turn1_upstream_ms",
            "turn1_outside_exchange_ms", "turn1_after_first_byte_ms", "turn1_lmsd_cpu_s",
            "turn1_engine_cpu_s", "engine_start_s", "lmsd_start_s", "load1")
    for mode in ("direct", "lmsd"):
        print(f"{mode:7} " + ", ".join(f"{key} {median(key, mode=mode)}" for key in keys))
        for first in (True, False):
            print(f"{'':7} {'first' if first else 'second'} in its pair: turn1_ttft_ms "
                  f"{median('turn1_ttft_ms', mode=mode, first_in_pair=first)}, "
                  f"turn1_prompt_ms {median('turn1_prompt_ms', mode=mode, first_in_pair=first)}")
    print(f"runs in {logs / 'runs.json'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--engine", choices=("llama-cpp-python", "llama-server"),
                        default="llama-cpp-python")
    parser.add_argument("--repeat", type=int, default=0,
                        help="K pairs of turn 1 alone (direct, lmsd alternating first)")
    options = parser.parse_args()
    if options.repeat:
        trio.run(repeat_turn_one, options.repeat, options.engine)
    else:
        trio.run(main, options.turns, options.engine)
