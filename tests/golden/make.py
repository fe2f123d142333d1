"""Regenerate the golden exchanges: ``python -m tests.golden.make [NAME...]``.

Each captured client request (tests/fixtures: Claude Code and Codex CLI) is sent through
lmsd to the emulator with recording on, over each upstream dialect it names; the
recorded exchanges are written here, and tests/golden/test_golden.py replays every one
through the current code. A change in translation then shows as a diff to review: run
this again only when the new client-visible stream is the one wanted."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import trio

from lmsd.daemon import replay
from lmsd.protocol import recording as fmt
from tests.emulator import Emulator, serve_emulator
from tests.support.fixtures import FIXTURES

HERE = Path(__file__).parent
MODEL = "qwen/qwen3-coder-30b"  # the emulator's loaded model
#: (file name, fixture, index among its requests, upstream dialect)
CASES = [
    ("claude_basic_responses", "basic_json", 0, "responses"),
    ("claude_basic_chat", "basic_json", 0, "chat"),
    ("claude_basic_messages", "basic_json", 0, "messages"),
    ("claude_second_turn_responses", "basic_json", 1, "responses"),
    ("claude_unknown_model_responses", "inter_nodisable", 0, "responses"),
    ("claude_unknown_model_chat", "inter_nodisable", 0, "chat"),
    ("claude_interactive_responses", "inter_nodisable", 2, "responses"),
    ("claude_interactive_messages", "inter_nodisable", 2, "messages"),
    ("claude_count_tokens_responses", "inter_nodisable", 3, "responses"),
    ("codex_min_tools_responses", "codex_0171", 0, "responses"),
    ("codex_min_tools_chat", "codex_0171", 0, "chat"),
    ("codex_reasoning_responses", "codex_0171", 2, "responses"),
]


def captured(fixture: str, index: int) -> dict[str, Any]:
    data = json.loads((FIXTURES / f"{fixture}.json").read_text(encoding="utf-8"))
    found = [r for r in data["requests"] if isinstance(r.get("body"), dict)]
    return found[index]


async def record(fixture: str, index: int, kind: str) -> dict[str, Any]:
    request = captured(fixture, index)
    skeleton = fmt.new_exchange(recorded_at=0, method="POST", path=request["path"],
                                headers=request["headers"],
                                body=json.dumps(request["body"]).encode())
    async with trio.open_nursery() as nursery:
        emu = Emulator()
        emu.lmstudio_api = kind == "responses"  # a llama-server-like engine otherwise
        url = await serve_emulator(nursery, emu)
        exchange = await replay.run(skeleton, against=url,
                                    settings={"model": MODEL, "upstream_api": kind})
        nursery.cancel_scope.cancel()
    exchange["recorded_at"] = 0
    exchange.pop("unmatched_upstream", None)
    exchange["source"] = f"tests/fixtures/{fixture}.json request {index}"
    return exchange


async def main(only: list[str]) -> None:
    for name, fixture, index, kind in CASES:
        if only and name not in only:
            continue
        exchange = await record(fixture, index, kind)
        path = HERE / f"{name}.json"
        path.write_text(json.dumps(exchange, ensure_ascii=False, indent=1) + "\n",
                        encoding="utf-8")
        print(path.name, exchange["client_stream"]["status"],
              [(u["method"], u["path"], u["status"]) for u in exchange["upstream"]])


if __name__ == "__main__":
    trio.run(main, sys.argv[1:])  # names: only those cases
