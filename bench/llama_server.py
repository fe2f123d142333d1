"""Prefill and the prefix cache through lmsd on llama.cpp's llama-server.

The tiny generated model (tests/engine/make_model.py) on llama-server (one slot, 2
threads), built by ``.ci/run`` (``LMSD_LLAMA_SERVER``), spoken to as the ``chat`` kind
(auto would pick ``messages`` there). Each repetition starts a fresh engine and lmsd,
then times the first text delta of a Claude-Code-shaped request of about 4k tokens (the
captured system prompt and four real tools, one user message):

- startup: spawning llama-server until ``/health`` answers 200;
- cold: the first request;
- warm: the same again, with a new billing header, as Claude Code sends it;
- +1 turn: an assistant answer and a new user message appended;
- first line changed: the first stable system line differs, so nothing is reusable;
- direct cold and warm: the chat body lmsd sends, straight to a fresh engine.

    python bench/llama_server.py [--reps 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, free_port, lmsd_command, process, timed_stream
from lmsd.protocol.anthropic.items import conversation
from lmsd.protocol.anthropic.request import validate_messages_request
from lmsd.protocol.chat.request import build_chat_request
from tests.engine.llama_server import start_llama_server
from tests.engine.server import MODEL_ALIAS

TOOLS = ("Bash", "Edit", "Read", "Write")


def base_request() -> dict[str, Any]:
    captured = json.loads((ROOT / "tests/fixtures/basic_json.json").read_text())
    first = captured["requests"][0]["body"]
    return {"model": "claude-sonnet-4-6", "system": copy.deepcopy(first["system"]),
            "tools": [t for t in first["tools"] if t["name"] in TOOLS],
            "messages": [{"role": "user", "content": "List the files in this repository."}],
            "max_tokens": 8, "stream": True}


def billing(body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body["system"][0]["text"] = ("x-anthropic-billing-header: cc_version=2.1.329.3d0; "
                                 f"cc_entrypoint=cli; cch={secrets.token_hex(3)};")
    return body


async def prompt_tokens(engine: str, chat: dict[str, Any]) -> int:
    async with httpx.AsyncClient(base_url=engine, timeout=60) as http:
        prompt = (await http.post("/apply-template", json=chat)).json()["prompt"]
        tokens = await http.post("/tokenize", json={"content": prompt, "parse_special": True})
    return len(tokens.json()["tokens"])


async def one_rep() -> dict[str, float]:
    out: dict[str, float] = {}
    body = base_request()
    chat = build_chat_request(conversation(validate_messages_request(billing(body))),
                              model=MODEL_ALIAS)
    # No keep-alive: llama-server closes the connection after every streamed answer
    # although it says keep-alive, and a request sent on it before the close is seen
    # gets no answer.
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    async with trio.open_nursery() as nursery, \
            httpx.AsyncClient(timeout=600, limits=no_reuse) as http:
        t0 = time.perf_counter()
        engine = await start_llama_server(nursery)
        out["startup"] = time.perf_counter() - t0
        out["tokens"] = await prompt_tokens(engine.url, chat)
        port, admin = free_port(), free_port()
        args = lmsd_command(port, admin, engine.url, f"llama-server-{time.time()}",
                            "--model", MODEL_ALIAS, "--upstream-api", "chat")
        async with process(args, f"http://127.0.0.1:{admin}/healthz"):
            url = f"http://127.0.0.1:{port}/v1/messages"

            async def ttft(request: dict[str, Any]) -> float:
                data = json.dumps(request).encode()
                return (await timed_stream(http, url, data, b"content_block_delta"))[0]

            out["cold"] = await ttft(billing(body))
            out["warm"] = await ttft(billing(body))
            longer = billing(body)
            longer["messages"] += [{"role": "assistant", "content": "Sure."}, {
                "role": "user", "content": "And the tests, one line each, please."}]
            out["+1 turn"] = await ttft(longer)
            changed = billing(body)
            changed["system"][2]["text"] = "You are a different agent.\n" + \
                changed["system"][2]["text"]
            out["first line changed"] = await ttft(changed)
        await engine.restart()
        direct = json.dumps(chat).encode()
        chat_url = f"{engine.url}/v1/chat/completions"
        out["direct cold"] = (await timed_stream(http, chat_url, direct, b'"content":"'))[0]
        out["direct warm"] = (await timed_stream(http, chat_url, direct, b'"content":"'))[0]
        nursery.cancel_scope.cancel()
    return out


async def main(reps: int) -> None:
    runs = []
    for n in range(reps):
        runs.append(await one_rep())
        print(f"rep {n + 1}: " + ", ".join(f"{k} {v * 1000:.0f} ms" if k != "tokens"
                                           else f"{k} {v:.0f}" for k, v in runs[-1].items()),
              flush=True)
    print(f"\nmedians of {reps} (ms; prompt {runs[0]['tokens']:.0f} tokens):")
    for key in runs[0]:
        if key != "tokens":
            print(f"  {key:20} {statistics.median(r[key] for r in runs) * 1000:8.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    trio.run(main, parser.parse_args().reps)
