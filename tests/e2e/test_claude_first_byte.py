"""Claude Code 2.1.337 with its first-byte window armed, in front of an lmsd that waits longer
than that window before the engine answers: the CLI must not resend (every resend is a second
prefill), so lmsd's headers have to go out at once on every path.

What arms the window (read from the 2.1.337 binary, then seen here): the request must carry a
client request id and pass the byte-watchdog gate, and both hold only for a first-party base
URL (``api.anthropic.com``) or when ``_CLAUDE_CODE_ASSUME_FIRST_PARTY_BASE_URL`` is set (or a
signed-in Cloud gateway). ``ANTHROPIC_BASE_URL=http://127.0.0.1:PORT`` with only
``CLAUDE_STREAM_FIRST_BYTE_TIMEOUT_MS`` set waits for headers as long as ``API_TIMEOUT_MS``.
The window is ``max(CLAUDE_STREAM_FIRST_BYTE_TIMEOUT_MS, 10 s)`` plus 1 s per 32 KiB of
request body (about 12 s for these ~49 KB requests); a late answer costs one retry, reported
as ``system/api_retry`` with ``no_response`` in ``stream-json``.

``test_the_window_is_armed_and_shorter_than_the_hold`` proves, against a server that holds
its headers, that the setup arms the window and that ``HOLD`` outlasts it; each lmsd test
then makes lmsd wait ``HOLD`` on one path. Each run takes ~35 s: ``HOLD``, and ~17 s in
which the CLI, taking the base URL for first party, retries remote settings and policy
limits at api.anthropic.com (unresolvable here) before its first request.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

from tests.emulator import Fault, Reply, Text
from tests.support.boxes import boxes, upstreams
from tests.support.claude_cli import ClaudeRun, run_claude
from tests.support.daemon import MODEL
from tests.support.wire_tap import WireTap

pytestmark = pytest.mark.cli

#: What lmsd waits for on each path: longer than the CLI's window for these requests.
HOLD = 16.0
ARMED = {"CLAUDE_STREAM_FIRST_BYTE_TIMEOUT_MS": "10000",
         "_CLAUDE_CODE_ASSUME_FIRST_PARTY_BASE_URL": "1"}
PROMPT = "Reply with the single word pong."
PING = b"event: ping"


def retries(run: ClaudeRun) -> list[dict[str, Any]]:
    """The CLI's own reports of a request it sent again (``system/api_retry``)."""
    found = []
    for line in run.stdout.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and item.get("subtype") == "api_retry":
            found.append(item)
    return found


async def claude(url: str, tmp_path: Any) -> ClaudeRun:
    """``claude -p PROMPT`` with the first-byte window armed, reporting in stream-json."""
    return await run_claude(url, PROMPT, home=tmp_path / "home", cwd=tmp_path, timeout=120,
                            allowed_tools=(), extra_env=ARMED,
                            extra_args=("--output-format", "stream-json", "--verbose"))


def answered_once(run: ClaudeRun) -> None:
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert (run.text or "").strip() == "pong", run.stdout[-3000:]
    assert retries(run) == []  # the CLI never gave up waiting for headers


async def through_tap(nursery: trio.Nursery, server: Any) -> WireTap:
    """A relay in front of lmsd that keeps what reached the CLI."""
    tap = WireTap(int(server.url.rsplit(":", 1)[1]))
    await nursery.start(tap.serve)
    return tap


async def release_after_hold(server: Any, gate: trio.Event,
                             task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Set ``gate`` ``HOLD`` seconds after lmsd took the CLI's request."""
    with server.bus.subscribe(types=("request.start",), replay=0) as sub:
        task_status.started()
        await sub.next()
    await trio.sleep(HOLD)
    gate.set()


def holding_server(seen: list[str]) -> QuartTrio:
    """A server that holds the headers of the first POST /v1/messages for ``HOLD`` seconds,
    or until a second one arrives, then answers "pong"."""
    app = QuartTrio("holds_headers")
    second = trio.Event()

    @app.post("/v1/messages")
    async def messages() -> Response:
        body = await request.get_json()
        seen.append(body.get("model", ""))
        if len(seen) == 1:
            with trio.move_on_after(HOLD):
                await second.wait()
        else:
            second.set()
        return Response(pong_stream(body.get("model", "")), content_type="text/event-stream")

    return app


def pong_stream(model: str) -> bytes:
    events = [
        {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 0}}},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "pong"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 1}},
        {"type": "message_stop"}]
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


async def test_the_window_is_armed_and_shorter_than_the_hold(nursery, tmp_path):
    """The control: headers held ``HOLD`` s make this CLI send its request again, so the
    window is armed in this setup and ``HOLD`` is longer than it."""
    seen: list[str] = []
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    binds = await nursery.start(partial(serve, holding_server(seen), config,
                                        shutdown_trigger=trio.sleep_forever))
    run = await claude(binds[0], tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert len(seen) == 2, seen
    [retry] = retries(run)
    assert retry["no_response"]["waited_ms"] < HOLD * 1000, retry


async def test_a_long_prefill_is_not_sent_twice(start_lmsd, emulator, nursery, tmp_path):
    emulator.script(Reply(Text("pong")))
    emulator.inject(Fault.slow_first_byte(HOLD))  # the engine says nothing until it is done
    server = await start_lmsd(emulator.url, ping_interval="1")
    tap = await through_tap(nursery, server)
    run = await claude(tap.url, tmp_path)
    answered_once(run)
    assert len(emulator.generations) == 1
    assert tap.count(PING) >= 2


async def test_a_model_reload_is_not_sent_twice(start_lmsd, emulator, nursery, tmp_path):
    emulator.script(Reply(Text("pong")))
    emulator.models[MODEL].context_length = 4096  # below min_context: the watcher reloads
    emulator.load_gate = gate = trio.Event()
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.1",
                              ping_interval="1")
    watcher = server.router.backends[0].watcher
    with trio.fail_after(10):
        while not watcher.reloading(MODEL):
            await trio.sleep(0.02)
    tap = await through_tap(nursery, server)
    await nursery.start(release_after_hold, server, gate)
    run = await claude(tap.url, tmp_path)
    answered_once(run)
    assert any(e["type"] == "request.waiting_for_reload" for e in server.bus.recent)
    assert len(emulator.generations) == 1
    assert tap.count(PING) >= 2


async def test_a_slot_restore_is_not_sent_twice(start_lmsd, emulator, nursery, tmp_path):
    """The keeper's restore (llama-server's slot file) is held: its I/O is the slow part."""
    emulator.script(Reply(Text("pong")))
    server = await start_lmsd(emulator.url, ping_interval="1")
    keeper = server.router.backends[0].keeper
    turn = keeper.turn
    gate, restores = trio.Event(), []

    @asynccontextmanager
    async def slow_restore(*args: Any, **kwargs: Any) -> Any:
        restores.append(args[0])
        await gate.wait()
        async with turn(*args, **kwargs) as body:
            yield body

    keeper.turn = slow_restore
    tap = await through_tap(nursery, server)
    await nursery.start(release_after_hold, server, gate)
    run = await claude(tap.url, tmp_path)
    answered_once(run)
    assert len(restores) == 1 and len(emulator.generations) == 1
    assert tap.count(PING) >= 2


async def test_a_failover_from_a_hanging_upstream_is_not_sent_twice(start_lmsd, nursery,
                                                                     tmp_path):
    """The first upstream takes the request and hangs; after ``upstream_timeout`` (HOLD)
    lmsd moves it to the second. The CLI saw headers all along and asked once."""
    a, b = await boxes(nursery, "a", "b")
    b.emu.script(Reply(Text("pong")))
    a.emu.inject(Fault.hang())
    server = await start_lmsd(a.url, upstreams=upstreams(a, b), poll_interval="60",
                              upstream_timeout=str(HOLD), ping_interval="1")
    with trio.fail_after(10):
        while not all(x.watcher.polls for x in server.router.backends):
            await trio.sleep(0.02)
    tap = await through_tap(nursery, server)
    run = await claude(tap.url, tmp_path)
    answered_once(run)
    assert len(a.generations()) == 1 and len(b.generations()) == 1
    assert any(e["type"] == "upstream.failover" for e in server.bus.recent)
    assert tap.count(PING) >= 2
