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

On llama-server the forced Bash call needs the logit biases of ``FORCED_TOOL_CALLS``, and
lmsd sends the named choice as ``required`` with Bash alone, so its prompt has one tool.
"""

from __future__ import annotations

import argparse
import copy
import json
import secrets
import sys
import time
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
            if ttft is None and b"content_block_delta" in chunk:
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--engine", choices=("llama-cpp-python", "llama-server"),
                        default="llama-cpp-python")
    options = parser.parse_args()
    trio.run(main, options.turns, options.engine)
