"""The Messages dialect's own cost (issue 14): rendering a turn and reading its stream.

- plan: the captured ~78 KB Claude Code 2.1.329 request (``tests/fixtures``), validated
  and turned into a conversation once, then planned for each upstream kind (the body and
  the history's chain hashes): ``plan_messages_turn`` against ``plan_stateless_turn``
  (chat) and ``plan_turn`` (Responses, no chain node), the body then JSON-encoded as
  httpx sends it;
- decode: 1,000 streamed text deltas (4 characters each, as the emulator chunks them) of
  one answer, as SSE bytes in llama-server's grammar through ``SSEDecoder`` and
  ``MessagesDecoder``, against the same text as Chat Completions chunks through
  ``SSEDecoder`` and ``ChatDecoder``.

Alternating, N runs each; prints medians.

    python bench/messages.py [--n 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))

from bench.common import ROOT
from lmsd.protocol.anthropic.decode import MessagesDecoder
from lmsd.protocol.anthropic.items import conversation
from lmsd.protocol.anthropic.request import validate_messages_request
from lmsd.protocol.chat.decode import ChatDecoder
from lmsd.protocol.plan import plan_messages_turn, plan_stateless_turn, plan_turn
from lmsd.protocol.sse import SSEDecoder

MODEL = "qwen/qwen3-coder-30b"
TEXT = "The function reads the configuration once and caches it, so the next is cheap. "


def _sse(name: str | None, data: dict | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {name}\n" if name else "").encode() + f"data: {payload}\n\n".encode()


def llama_stream(pieces: list[str]) -> list[bytes]:
    out = [_sse("message_start", {"type": "message_start", "message": {
        "id": "chatcmpl-1", "type": "message", "role": "assistant", "content": [],
        "model": MODEL, "stop_reason": None, "stop_sequence": None,
        "usage": {"cache_read_input_tokens": 0, "input_tokens": 100, "output_tokens": 0}}}),
        _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}})]
    out += [_sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "text_delta", "text": p}})
            for p in pieces]
    out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
    out.append(_sse("message_delta", {"type": "message_delta", "delta": {
        "stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": len(pieces)}}))
    out.append(_sse("message_stop", {"type": "message_stop"}))
    return out


def chat_stream(pieces: list[str]) -> list[bytes]:
    def chunk(delta: dict, finish: str | None = None) -> bytes:
        return _sse(None, {"id": "c1", "object": "chat.completion.chunk", "model": MODEL,
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    return [chunk({"role": "assistant", "content": ""}),
            *(chunk({"content": p}) for p in pieces), chunk({}, "stop"), _sse(None, "[DONE]")]


def read_messages(stream: list[bytes]) -> int:
    sse, decoder, n = SSEDecoder(), MessagesDecoder("msg_bench"), 0
    for raw in stream:
        for event in sse.feed(raw):
            n += len(decoder.feed(json.loads(event.data), event.event))
    return n + len(decoder.finish())


def read_chat(stream: list[bytes]) -> int:
    sse, decoder, n = SSEDecoder(), ChatDecoder("msg_bench"), 0
    for raw in stream:
        for event in sse.feed(raw):
            n += len(decoder.feed(event.data))
    return n + len(decoder.finish())


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def compare(n: int, cases: dict[str, Callable[[], object]]) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(n):
        for name, run in cases.items():
            times[name].append(timed(run))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    data = json.loads((ROOT / "tests/fixtures/large_request.json").read_text())
    body = data["requests"][0]["body"]
    conv = conversation(validate_messages_request(body))
    dumps = json.dumps
    render = compare(args.n, {
        "messages": lambda: dumps(plan_messages_turn(conv, model=MODEL, session="s").full),
        "chat": lambda: dumps(plan_stateless_turn(conv, model=MODEL).full),
        "responses": lambda: dumps(plan_turn(conv, model=MODEL, nodes=()).full),
    })
    print(f"plan + encode the {len(json.dumps(body)) // 1024} KB Claude Code turn:")
    for name, t in render.items():
        print(f"  {name:<10} {t * 1e3:7.2f} ms")
    text = TEXT * 60
    pieces = [text[i:i + 4] for i in range(0, 4000, 4)]
    streams = {"messages (llama-server)": llama_stream(pieces), "chat": chat_stream(pieces)}
    decode = compare(args.n, {
        "messages (llama-server)": lambda: read_messages(streams["messages (llama-server)"]),
        "chat": lambda: read_chat(streams["chat"]),
    })
    print("read 1,000 streamed text deltas (SSE bytes to pivot events):")
    for name, t in decode.items():
        size = sum(map(len, streams[name])) // 1024
        print(f"  {name:<24} {t * 1e3:6.2f} ms  ({size} KB, {t * 1e3:.2f} us per delta)")


if __name__ == "__main__":
    main()
