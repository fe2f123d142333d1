"""Claude Code 2.1.337's stream damage check is live in our setup, so the repair tests that
pass on the real CLI (test_repair_cli.py) and the port's verdicts on lmsd's streams
(tests/fronts/test_stream_damage.py) mean something:

- a tiny server whose stream carries a damaged ``content_block_delta`` inside a block (each
  shape the check names: nameless, one letter off, ...) makes ``claude -p`` fail the stream
  with the damage message, for the reason the port (tests/support/stream_damage.py) gives;
  the CLI then resends the request without streaming. The same stream well formed is read
  once;
- lmsd streams a repaired tool call with pings inside the block (a slow emulator) and the
  CLI runs the tool.
"""

from __future__ import annotations

import json
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from lmsd.protocol.sse import encode, encode_all
from tests.emulator import PrintedCall, Reply, Text
from tests.support.claude_cli import ClaudeRun, require_claude, run_claude
from tests.support.stream_damage import (
    DAMAGED_MESSAGE,
    assert_undamaged,
    check_stream,
    pings_in_blocks,
)

pytestmark = pytest.mark.cli

START = {"type": "message_start", "message": {
    "id": "msg_damage_1", "type": "message", "role": "assistant", "model": "claude-x",
    "content": [], "stop_reason": None, "stop_sequence": None,
    "usage": {"input_tokens": 10, "output_tokens": 0, "cache_creation_input_tokens": 0,
              "cache_read_input_tokens": 0}}}
BLOCK = {"type": "content_block_start", "index": 0,
         "content_block": {"type": "text", "text": ""}}
DELTA = {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "well-formed-answer"}}
END = [{"type": "content_block_stop", "index": 0},
       {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 3}},
       {"type": "message_stop"}]
WELL_FORMED = encode_all([START, BLOCK]) + encode(DELTA) + encode_all(END)


def with_delta(frame: bytes) -> bytes:
    """The well-formed stream with its one delta sent as ``frame`` instead."""
    return encode_all([START, BLOCK]) + frame + encode_all(END)


_DATA = f"data: {json.dumps(DELTA)}\n\n".encode()
#: one damaged shape of the delta per reason the CLI's check gives
DAMAGED = {
    "nameless_event": with_delta(_DATA),  # the CLI's reader would drop it unseen
    "name_one_letter_off": with_delta(b"event: content_block_delt\n" + _DATA),
    "quoted_name": with_delta(b'event: "content_block_delta"\n' + _DATA),
    "damaged_line": with_delta(b"event: content_block_d\xffelta\n" + _DATA),
    "joined_ping": with_delta(b"event: ping\n" + _DATA),
}


MESSAGE = {**START["message"], "content": [{"type": "text", "text": "non-streamed-answer"}],
           "stop_reason": "end_turn"}


class StreamServer:
    """Answers a streamed /v1/messages with ``body``, a non-streamed one with ``MESSAGE``;
    keeps each request's body."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.requests: list[dict[str, Any]] = []

    async def handle(self, stream: trio.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            head += chunk
        top, _, rest = head.partition(b"\r\n\r\n")
        lines = top.decode("latin-1").split("\r\n")
        length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                       if line.lower().startswith("content-length:")), 0)
        while len(rest) < length:
            rest += await stream.receive_some(65536)
        method, path = lines[0].split()[:2]
        if method == "POST" and path.split("?")[0].endswith("/v1/messages"):
            request = json.loads(rest[:length])
            self.requests.append(request)
            if request.get("stream"):
                await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                                      b"connection: close\r\n\r\n" + self.body)
            else:
                await self.send(stream, 200, json.dumps(MESSAGE).encode())
        else:
            await self.send(stream, 404, b'{"type":"error","error":{"type":"not_found_error",'
                                         b'"message":"no"}}')
        await stream.aclose()

    @staticmethod
    async def send(stream: trio.SocketStream, status: int, body: bytes) -> None:
        await stream.send_all(b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\n"
                              b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                              % (status, len(body), body))


async def serve(nursery: trio.Nursery, body: bytes) -> tuple[StreamServer, str]:
    server = StreamServer(body)
    [listener] = await nursery.start(partial(trio.serve_tcp, server.handle, 0,
                                             host="127.0.0.1"))
    return server, f"http://127.0.0.1:{listener.socket.getsockname()[1]}"


async def ask(url: str, home: Path, **env: str) -> tuple[ClaudeRun, str]:
    """``claude -p`` with ``--debug``; its run and its debug log."""
    run = await run_claude(url, "say hi", home=home, cwd=home.parent, allowed_tools=[],
                           extra_args=["--debug"], timeout=180, extra_env=env)
    log = "".join(p.read_text(errors="replace") for p in (home / ".claude" / "debug").glob("*"))
    return run, log


async def test_the_cli_drops_each_damaged_stream_for_a_non_streamed_retry(nursery, tmp_path):
    """Each damaged shape is caught by the real CLI for the reason the port gives; the
    streamed answer is thrown away and the request sent again without streaming: on a
    local engine, a second prefill."""
    require_claude()
    for reason, body in DAMAGED.items():
        assert check_stream(body).fatal == reason  # the port's verdict
        server, url = await serve(nursery, body)
        run, log = await ask(url, tmp_path / reason / "home")
        assert f"Stream failed as damaged ({reason})" in log, (reason, log[-3000:])
        assert DAMAGED_MESSAGE in log
        assert [r.get("stream") for r in server.requests] == [True, False], reason
        assert run.returncode == 0 and run.text == "non-streamed-answer", run.stdout


async def test_the_same_stream_well_formed_is_read_once(nursery, tmp_path):
    require_claude()
    assert_undamaged(WELL_FORMED)
    server, url = await serve(nursery, WELL_FORMED)
    run, log = await ask(url, tmp_path / "home")
    assert run.returncode == 0 and run.text == "well-formed-answer", run.stdout
    assert [r.get("stream") for r in server.requests] == [True]
    assert "Stream failed as damaged" not in log and "falling back to non-streaming" not in log


async def test_with_the_check_off_a_nameless_delta_is_lost_silently(nursery, tmp_path):
    """What the check guards against: the reader drops the nameless delta unseen."""
    require_claude()
    server, url = await serve(nursery, DAMAGED["nameless_event"])
    run, log = await ask(url, tmp_path / "home", CLAUDE_CODE_DISABLE_STREAM_DAMAGE_CHECK="1")
    assert "Stream failed as damaged" not in log
    assert run.returncode == 0 and run.text == "", run.stdout  # the answer's text is gone
    assert all(r.get("stream") for r in server.requests)


async def test_claude_code_runs_a_repaired_call_streamed_with_pings_in_the_block(
        start_lmsd, emulator, tmp_path):
    """A slow model prints its call: lmsd holds it with the text block open and pings
    into it, then sends the repaired tool_use; the CLI runs it. lmsd records the session,
    so the bytes the CLI read are held to the check too."""
    require_claude()
    session = str(uuid.uuid4())  # the CLI's session id: lmsd's session, recorded
    emulator.token_delay, emulator.chunk_size = 0.3, 8
    server = await start_lmsd(emulator.url, ping_interval="0.1", record_sessions=session)
    emulator.script(Reply(PrintedCall("qwen_xml", "Bash", {"command": "echo pinged-$((40+2))"},
                                      before="I will run it.\n")),
                    Reply(Text("done")))
    (tmp_path / "tmp").mkdir()
    run = await run_claude(server.url, "run the echo command via bash, then say done",
                           home=tmp_path / "home", cwd=tmp_path, allowed_tools=["Bash"],
                           extra_args=["--session-id", session],
                           extra_env={"TMPDIR": str(tmp_path / "tmp")})
    assert run.returncode == 0 and run.text == "done", run.stderr + run.stdout
    first, second = emulator.generations
    outputs = [i for i in second.body["input"] if i.get("type") == "function_call_output"]
    assert "pinged-42" in outputs[-1]["output"]  # Claude Code really ran it
    assert [e["type"] for e in server.bus.recent].count("tool_call.repaired") == 1
    paths = [e["path"] for e in server.bus.recent if e["type"] == "session.recorded"]
    streams = []
    for path in paths:
        exchange = json.loads(Path(path).read_text())
        if exchange["client"]["path"].endswith("/v1/messages") and \
                exchange["client"]["body"].get("stream"):
            streams.append("".join(text for _, text in exchange["client_stream"]["chunks"]))
    assert len(streams) == 2  # no turn was resent
    verdict = assert_undamaged(streams[0])
    assert pings_in_blocks(verdict) >= 1
    assert '"type":"tool_use"' in streams[0]
