"""The traffic of bench/peers.py: the emulator every system stands in front of (markers
for the correctness checks), the captured request bodies in each system's API, and the
timed alternating rounds."""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from bench.common import ROOT
from bench.peers_systems import MODEL
from tests.emulator import Call, Emulator, Reasoning, Reply, RequestRecord, Text, serve_emulator
from tests.emulator.state import default_models

THINK_MARK = "[bench:think]"
LENGTH_MARK = "[bench:length]"
SYSTEM_MARK = "[bench:system]"
SYSTEM_SEEN = "The system message arrived."
THINK_TEXT = "The user wants a listing, so Bash it is."
THINK_CALL = Call("Bash", {"command": "ls -la", "description": "List files"},
                  call_id="call_bench_7f3a91")

ANTHROPIC_DELTA = re.compile(rb'"content_block_delta"')
RESPONSES_DELTA = re.compile(rb'\.delta"')
CHAT_DELTA = re.compile(rb'"(?:content|arguments|reasoning_content)":\s*"[^"]')


# -- the emulator process ----------------------------------------------------------------


def _item_text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    return " ".join(str(p.get("text", "")) for p in content or [] if isinstance(p, dict))


def current_turn_text(items: list[dict[str, Any]]) -> str:
    """Text of the trailing user/system messages (the turn the model is answering)."""
    texts = []
    for item in reversed(items):
        if item.get("type", "message") != "message" or item.get("role") == "assistant":
            break
        texts.append(_item_text(item))
    return " ".join(texts)


class BenchEmulator(Emulator):
    """The default policy, plus markers for the correctness checks: in the current turn
    (THINK_MARK, LENGTH_MARK), or anywhere in the context or instructions (SYSTEM_MARK,
    which Claude Code's mid-conversation system message carries in the check)."""

    def next_reply(self, record: RequestRecord) -> Reply:
        text = current_turn_text(record.context_items)
        everything = " ".join([record.instructions_used or ""]
                              + [_item_text(i) for i in record.context_items])
        if SYSTEM_MARK in everything:
            reply = Reply(Text(SYSTEM_SEEN))
        elif THINK_MARK in text:
            reply = Reply(Reasoning(THINK_TEXT), Text("Listing the files."), THINK_CALL)
        elif LENGTH_MARK in text:
            reply = Reply(Text("This answer runs out of tokens"), incomplete=True)
        else:
            return super().next_reply(record)
        record.reply = reply
        return reply


def run_emulator(port: int) -> None:
    models = default_models()
    models[0].context_length = 262144
    emu = BenchEmulator(models)

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            url = await serve_emulator(nursery, emu, port=port)
            print(f"bench emulator on {url}", file=sys.stderr, flush=True)

    trio.run(serve)


# -- request bodies ----------------------------------------------------------------------------


def captured() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The first two /v1/messages requests of basic_json, and Claude Code's beta header."""
    run = json.loads((ROOT / "tests/fixtures/basic_json.json").read_text())
    reqs = [r for r in run["requests"] if r["path"] == "/v1/messages"][:2]
    headers = {k.lower(): v for k, v in reqs[0]["headers"]}
    return [r["body"] for r in reqs], {"anthropic-beta": headers.get("anthropic-beta", "")}


def responses_body(body: dict[str, Any]) -> dict[str, Any]:
    """What lmsd sends upstream for ``body`` (its own translation)."""
    from lmsd.protocol.anthropic.items import conversation
    from lmsd.protocol.anthropic.request import validate_messages_request
    from lmsd.protocol.plan import plan_turn

    req = validate_messages_request(body)
    return plan_turn(conversation(req), model=MODEL, nodes=()).full


def chat_body(responses: dict[str, Any]) -> dict[str, Any]:
    """The same conversation as a chat completions request (the chat peers' floor)."""
    messages: list[dict[str, Any]] = []
    if responses.get("instructions"):
        messages.append({"role": "system", "content": responses["instructions"]})
    for item in responses["input"]:
        kind = item.get("type", "message")
        if kind == "message":
            content = item["content"]
            text = content if isinstance(content, str) else "".join(
                p.get("text", "") for p in content)
            messages.append({"role": item["role"], "content": text})
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item["output"]
            if not isinstance(output, str):
                output = "".join(p.get("text", "") for p in output)
            messages.append({"role": "tool", "tool_call_id": item["call_id"],
                             "content": output})
    tools = [{"type": "function", "function": {k: v for k, v in t.items() if k != "type"}}
             for t in responses.get("tools") or []]
    return {"model": MODEL, "messages": messages, "tools": tools, "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": responses.get("max_output_tokens")}


def with_marker(body: dict[str, Any], mark: str, role: str = "user") -> dict[str, Any]:
    """A copy of ``body`` whose last ``role`` message ends with a text block ``mark``.

    Claude Code's first request ends with a ``system`` role message (after the user's
    message), so the markers for the current turn go into the last user message.
    """
    body = json.loads(json.dumps(body))
    last = [m for m in body["messages"] if m["role"] == role][-1]
    if isinstance(last["content"], str):
        last["content"] = [{"type": "text", "text": last["content"]}]
    last["content"].append({"type": "text", "text": mark})
    return body


# -- timing --------------------------------------------------------------------------------------


@dataclass
class System:
    name: str
    url: str  # full endpoint URL
    bodies: list[bytes]  # request 1, request 2
    headers: dict[str, str]
    first: re.Pattern[bytes]
    floor: str | None = None  # the direct system this one is compared with
    base_url: str | None = None  # Anthropic base URL (peers only)
    proc: trio.Process | None = None
    samples: list[list[tuple[float, float]]] = field(default_factory=lambda: [[], []])
    errors: list[str] = field(default_factory=list)
    cpu: float | None = None  # CPU seconds over the timed phase
    rss: float | None = None
    checks: dict[str, str] = field(default_factory=dict)


async def timed(client: httpx.AsyncClient, system: System, which: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    ttft = None
    async with client.stream("POST", system.url, content=system.bodies[which],
                             headers=system.headers) as response:
        if response.status_code != 200:
            body = (await response.aread())[:300].decode(errors="replace")
            raise RuntimeError(f"HTTP {response.status_code}: {body}")
        async for chunk in response.aiter_raw():
            if ttft is None and system.first.search(chunk):
                ttft = time.perf_counter() - t0
    total = time.perf_counter() - t0
    if ttft is None:
        raise RuntimeError("no content delta in the stream")
    return ttft, total


async def run_rounds(client: httpx.AsyncClient, systems: list[System], rounds: int,
                     record: bool) -> None:
    for i in range(rounds):
        k = i % len(systems)
        for system in systems[k:] + systems[:k]:
            if len(system.errors) >= 5:
                continue
            for which in (0, 1):
                try:
                    sample = await timed(client, system, which)
                except (httpx.HTTPError, RuntimeError) as exc:
                    system.errors.append(f"request {which + 1}: {exc}")
                    continue
                if record:
                    system.samples[which].append(sample)
