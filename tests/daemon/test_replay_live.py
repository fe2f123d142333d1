"""``lmsd replay FILE --against URL``: a live upstream mints its own tool call ids and
counts tokens its own way (an unchained request, its cache), and neither is a difference;
a changed tool name, argument or text still is. Through the real CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from lmsd.daemon.replay import replay_file
from lmsd.protocol import recording as fmt
from lmsd.protocol.stream_diff import diff_streams
from tests.daemon.test_replay_attacks import replay_cli
from tests.emulator import Call, Reply, Text
from tests.support.conversation import Conversation
from tests.support.daemon import admin_get, next_event

FIRST = Reply(Text("step"), Call("Bash", {"command": "ls"}))
SECOND = Reply(Text("next"), Call("Bash", {"command": "pwd"}))


async def record_tool_turn(client, emulator, start_lmsd, api: str) -> Path:
    """A two-turn session recorded; the file of its second turn (chained, a tool call)."""
    lmsd = await start_lmsd(emulator.url, record_sessions="live-1", upstream_api=api)
    emulator.script(FIRST, SECOND)
    chat = Conversation(client.with_options(base_url=lmsd.url), session="live-1")
    with lmsd.bus.subscribe(session="live-1", types=("session.recorded",), replay=0) as sub:
        await chat.send("start")
        await next_event(sub, "session.recorded")
        await chat.send()
        written = await next_event(sub, "session.recorded")
    files = [f["path"] for f in (await admin_get(lmsd, "/recordings")).json()["files"]]
    assert len(files) == 2 and written["path"] in files
    return Path(written["path"])


def live_answer(emulator, reply: Reply) -> None:
    """The emulator, answering ``reply`` next and counting tokens differently from the
    recording (the whole prompt, nothing cached)."""
    emulator.script(reply)
    emulator.usage_mode = "openai"
    emulator.prefix_cache.clear()


def recorded_call_id(path: Path) -> str:
    exchange = json.loads(path.read_text(encoding="utf-8"))
    text = fmt.joined(exchange["client_stream"]["chunks"])
    starts = [json.loads(line[len("data: "):]) for line in text.splitlines()
              if line.startswith("data: ") and '"tool_use"' in line]
    return starts[0]["content_block"]["id"]


@pytest.mark.parametrize("api", ["responses", "chat", "messages"])
async def test_a_live_upstreams_call_ids_and_usage_are_not_differences(
        client, emulator, start_lmsd, tmp_path, api):
    path = await record_tool_turn(client, emulator, start_lmsd, api)
    recorded_id = recorded_call_id(path)
    if api == "messages":  # llama-server's own shape: 32 letters and digits, no prefix
        assert re.fullmatch(r"[A-Za-z0-9]{32}", recorded_id)
    exchange = json.loads(path.read_text(encoding="utf-8"))
    live_answer(emulator, Reply(Text("next"), Call("Bash", {"command": "pwd"},
                                                   call_id="call_live_77")))
    status, out, err = await replay_cli(tmp_path, exchange, "--against", emulator.url)
    assert (status, err) == (0, []), out
    assert out.splitlines() == [f"{tmp_path / 'handed-over.json'}: same client-visible result"]
    # not vacuous: compared strictly (as the recorded replay does), both differ
    live_answer(emulator, Reply(Text("next"), Call("Bash", {"command": "pwd"},
                                                   call_id="call_live_78")))
    live, result = await replay_file(path, against=emulator.url)
    strict = diff_streams(exchange["client_stream"], result["client_stream"])
    assert live == []
    assert any(line.startswith("-") and recorded_id in line for line in strict)
    assert any(line.startswith("+") and "call_live_78" in line for line in strict)
    assert any(line.startswith("+") and '"usage"' in line for line in strict)
    # each upstream request recorded once, as the daemon records it (replay's confined
    # transport once wrapped a second recorder around the daemon's own)
    def posts(upstream: list[dict[str, Any]]) -> list[str]:
        return [e["path"] for e in upstream if e["method"] == "POST"]
    assert posts(result["upstream"]) == posts(exchange["upstream"]) != []


@pytest.mark.parametrize(("reply", "shown"), [
    (Reply(Text("next"), Call("Bash", {"command": "pwD"}, call_id="call_9")), "pwD"),
    (Reply(Text("next"), Call("Shell", {"command": "pwd"}, call_id="call_9")), '"Shell"'),
    (Reply(Text("nexT"), Call("Bash", {"command": "pwd"}, call_id="call_9")), "nexT"),
])
async def test_a_changed_tool_name_argument_or_text_is_still_a_difference(
        client, emulator, start_lmsd, tmp_path, reply, shown):
    path = await record_tool_turn(client, emulator, start_lmsd, "responses")
    live_answer(emulator, reply)
    status, out, err = await replay_cli(tmp_path, json.loads(path.read_text("utf-8")),
                                        "--against", emulator.url)
    lines = out.splitlines()
    assert (status, err) == (1, [])
    assert lines[0] == f"{tmp_path / 'handed-over.json'}: the client-visible result differs"
    assert any(line.startswith("+") and shown in line for line in lines)
    changed = [line for line in lines[3:] if line.startswith(("+", "-"))]
    assert changed and not any('"call_' in line for line in changed)  # ids are numbered


def _stream(events: list[dict[str, Any]], *, sse: bool = True) -> dict[str, Any]:
    if not sse:
        return {"status": 200, "chunks": [[0, json.dumps(events[0])]]}
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return {"status": 200, "chunks": [[0, body]]}


def _chat(call_id: str, args: str, prompt: int) -> dict[str, Any]:
    return _stream([
        {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": call_id, "type": "function",
             "function": {"name": "Bash", "arguments": ""}}]}}]},
        {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": args}}]}}]},
        {"id": "chatcmpl-1", "choices": [], "usage": {
            "prompt_tokens": prompt, "completion_tokens": 5, "total_tokens": prompt + 5,
            "prompt_tokens_details": {"cached_tokens": prompt - 1}}}])


def _responses(call_id: str, args: str, tokens: int) -> dict[str, Any]:
    item = {"id": "fc_1", "type": "function_call", "call_id": call_id, "name": "Bash",
            "arguments": args}
    return _stream([{"type": "response.completed", "response": {
        "id": "resp_1", "output": [item],
        "usage": {"input_tokens": tokens, "output_tokens": 3, "total_tokens": tokens + 3,
                  "input_tokens_details": {"cached_tokens": 0}}}}], sse=False)


BARE = "aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW"  # llama-server's ids: 32 letters and digits


@pytest.mark.parametrize("shape", [_chat, _responses])
def test_live_mode_numbers_any_call_id_and_masks_counts_but_not_arguments(shape):
    recorded = shape("call_123456789", '{"command":"ls"}', 40)
    replayed = shape(BARE, '{"command":"ls"}', 400)
    assert diff_streams(recorded, replayed, live=True) == []
    strict = diff_streams(recorded, replayed)
    assert any(BARE in line for line in strict) and any("400" in line for line in strict)
    changed = shape(BARE, '{"command":"rm"}', 400)
    assert any('rm' in line for line in diff_streams(recorded, changed, live=True))


def test_live_mode_keeps_the_place_of_a_call_id():
    first = _stream([{"call_id": "call_1", "again": {"call_id": "call_2"}}], sse=False)
    swapped = _stream([{"call_id": "x", "again": {"call_id": "x"}}], sse=False)
    assert diff_streams(first, swapped, live=True) != []
