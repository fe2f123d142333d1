"""Every stream lmsd synthesises on the Anthropic front passes Claude Code 2.1.337's damage
check (the port in tests/support/stream_damage.py, checked against the real CLI in
tests/e2e/test_stream_damage_cli.py). A damaged stream is not only a failed turn: the CLI
throws the streamed answer away and sends the request again without streaming, a second
prefill on a local engine. Each test reads the raw bytes lmsd sent (no SSE parser in
between) and holds them to the check, then to the event grammar (anthropic_checks)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from tests.emulator import (
    FORMATS,
    Call,
    Emulator,
    Fault,
    PrintedCall,
    Reply,
    Text,
    serve_emulator,
)
from tests.support.anthropic_checks import block_starts, check_stream, parse_sse, tool_inputs
from tests.support.stream_damage import Verdict, assert_undamaged, pings_in_blocks

MODEL = "qwen/qwen3-coder-30b"  # the emulator's loaded model
SCHEMA = {"type": "object", "properties": {"command": {"type": "string"}},
          "required": ["command"]}
BASH = {"name": "Bash", "description": "Run a command", "input_schema": SCHEMA}
ARGS = {"command": "echo 'a \"quoted\" word' && ls -la /tmp | head -3"}
BODY: dict[str, Any] = {"model": "claude-sonnet-4-6", "max_tokens": 1000, "stream": True,
                        "tools": [BASH], "messages": [{"role": "user", "content": "go"}]}
UPSTREAMS = ["responses", "chat", "messages"]
#: the emulator's Chat Completions route takes no injected faults
FAULTY = ["responses", "messages"]


def speak(emulator: Emulator, upstream: str) -> dict[str, str]:
    """Make the emulator an LM Studio (Responses), a Chat Completions server or a
    llama-server answering /v1/messages; the lmsd settings that go with it."""
    if upstream == "messages":
        emulator.lmstudio_api = False
        emulator.messages_flavor = "llama_server"
        return {}
    return {"upstream_api": upstream}


async def raw_stream(server: Any, body: dict[str, Any] | None = None,
                     headers: dict[str, str] | None = None) -> bytes:
    """The bytes of lmsd's streamed answer, as they came."""
    async with httpx.AsyncClient(base_url=server.url, timeout=600) as http:
        response = await http.post("/v1/messages", json=body or BODY, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return response.content


def undamaged(raw: bytes, ending: str) -> tuple[Verdict, list[dict[str, Any]]]:
    """The check's verdict (no damage, no odd frame) and the events (a valid stream that
    ends ``complete`` or with an ``error``)."""
    verdict = assert_undamaged(raw)
    events = parse_sse(raw)
    assert check_stream(events) == ending, events[-3:]
    assert verdict.error_event is (ending == "error")
    return verdict, events



def open_block(events: list[dict[str, Any]]) -> str | None:
    """The kind of the block still open when the stream ended."""
    kind = None
    for e in events:
        if e["type"] == "content_block_start":
            kind = e["content_block"]["type"]
        elif e["type"] == "content_block_stop":
            kind = None
    return kind


# -- repaired tool calls --------------------------------------------------------------------


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("fmt", sorted(FORMATS))
async def test_each_repair_format_split_into_one_character_chunks(start_lmsd, emulator,
                                                                  upstream, fmt):
    server = await start_lmsd(emulator.url, **speak(emulator, upstream))
    emulator.chunk_size = 1  # every character its own upstream event
    before = "" if fmt == "bare_json" else "Let me look.\n"
    emulator.script(Reply(PrintedCall(fmt, "Bash", ARGS, before=before)))
    _, events = undamaged(await raw_stream(server), "complete")
    assert [b["type"] for b in block_starts(events)][-1] == "tool_use"
    assert list(tool_inputs(events).values()) == [ARGS]
    assert [e["type"] for e in server.bus.recent].count("tool_call.repaired") == 1


async def test_pings_inside_an_open_block_while_a_printed_call_is_held(start_lmsd,
                                                                       autojump_clock):
    """A slow model printing a call: the text block stays open while lmsd holds the call,
    and the pings that fill the silence go out inside it (emulated time: 25 s a chunk)."""
    emulator = Emulator(token_delay=25.0, chunk_size=16)
    async with trio.open_nursery() as nursery:
        emulator.url = await serve_emulator(nursery, emulator)  # type: ignore[attr-defined]
        server = await start_lmsd(emulator.url)  # ping_interval: 10 s, the default
        emulator.script(Reply(PrintedCall("qwen_xml", "Bash", ARGS, before="Running it.\n")))
        verdict, events = undamaged(await raw_stream(server), "complete")
        nursery.cancel_scope.cancel()
    assert pings_in_blocks(verdict) >= 3
    assert list(tool_inputs(events).values()) == [ARGS]


# -- pings and waits before the first token --------------------------------------------------


async def test_pings_during_a_long_prefill(start_lmsd, emulator, autojump_clock):
    server = await start_lmsd(emulator.url)
    emulator.inject(Fault.slow_first_byte(60))
    emulator.script(Reply(Text("after a long prefill"), Call("Bash", ARGS)))
    verdict, events = undamaged(await raw_stream(server), "complete")
    assert [e.event for e in verdict.events[:6]].count("ping") >= 5
    assert list(tool_inputs(events).values()) == [ARGS]


# -- errors after the stream started ---------------------------------------------------------


@pytest.mark.parametrize("fault", ["drop", "error_event"])
@pytest.mark.parametrize("upstream", FAULTY)
async def test_the_upstream_dies_inside_a_tool_call(start_lmsd, emulator, upstream, fault):
    """The engine goes away with a tool_use block open: an ``error`` event, no damage."""
    server = await start_lmsd(emulator.url, **speak(emulator, upstream))
    emulator.chunk_size = 2
    emulator.script(Reply(Text("Running it."), Call("Bash", ARGS)))
    emulator.inject(Fault.drop(after_events=18) if fault == "drop"
                    else Fault.error_event(after_events=18))
    _, events = undamaged(await raw_stream(server), "error")
    assert open_block(events) == "tool_use"  # the error came halfway through its input


@pytest.mark.parametrize("upstream", FAULTY)
async def test_the_upstream_dies_inside_a_held_printed_call(start_lmsd, emulator, upstream):
    server = await start_lmsd(emulator.url, **speak(emulator, upstream))
    emulator.script(Reply(PrintedCall("hermes_json", "Bash", ARGS, before="Sure.\n")))
    emulator.inject(Fault.drop(after_events=12))
    _, events = undamaged(await raw_stream(server), "error")
    assert "tool_use" not in [b["type"] for b in block_starts(events)]


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_an_overflow_the_engine_reports_after_the_headers(start_lmsd, emulator,
                                                                upstream):
    emulator.overflow_mode = "stream_error"  # type: ignore[assignment]
    emulator.models[MODEL].context_length = 400
    server = await start_lmsd(emulator.url, **speak(emulator, upstream))
    body = {**BODY, "messages": [{"role": "user", "content": " ".join(["abc"] * 420)}]}
    _, events = undamaged(await raw_stream(server, body), "error")
    assert events[-1]["error"]["message"].startswith("prompt is too long: ")


async def test_a_resend_answered_by_lmsd_itself(start_lmsd, emulator):
    """The engine's overflow moments ago answers the client's resend without the engine
    (protocol/clients/resends.py): that stream lmsd writes itself passes too."""
    emulator.models[MODEL].context_length = 400
    server = await start_lmsd(emulator.url, upstream_api="chat")
    body = {**BODY, "messages": [{"role": "user", "content": " ".join(["abc"] * 420)}]}
    session = {"X-Claude-Code-Session-Id": "damage-resend"}
    undamaged(await raw_stream(server, body, session), "error")
    sent = len(emulator.generations)
    _, events = undamaged(await raw_stream(server, body, session), "error")
    assert len(emulator.generations) == sent  # answered from memory
    assert events[-1]["error"]["message"].startswith("prompt is too long: ")


# -- the end of a turn ------------------------------------------------------------------------


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("printed", [False, True], ids=["call", "printed"])
async def test_max_tokens_inside_a_tool_call(start_lmsd, emulator, upstream, printed):
    """The output budget runs out halfway through the call's arguments."""
    server = await start_lmsd(emulator.url, **speak(emulator, upstream))
    cut = '{"command": "echo ha'
    part = (Text('Sure.\n<tool_call>\n{"name": "Bash", "arguments": ' + cut) if printed
            else Call("Bash", cut))
    emulator.script(Reply(Text("Sure."), part, incomplete=True) if not printed
                    else Reply(part, incomplete=True))
    _, events = undamaged(await raw_stream(server), "complete")
    assert events[-2]["delta"]["stop_reason"] == "max_tokens"


# -- waits after the headers: a model reload, a failover --------------------------------------


async def held_stream(server: Any, release: Any, *, started: Any,
                      headers: dict[str, str] | None = None) -> bytes:
    """The raw bytes of a stream whose wait is held until ``started()`` holds and a ping
    has followed ``message_start``, then let go with ``release()``: no timing."""
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http, \
            http.stream("POST", "/v1/messages", json=BODY, headers=headers) as response:
        assert response.status_code == 200
        raw = b""
        chunks = response.aiter_raw()
        async for chunk in chunks:
            raw += chunk
            if started() and b"event: ping" in raw.partition(b"event: message_start")[2]:
                break
        await release()
        async for chunk in chunks:
            raw += chunk
    return raw


async def test_a_model_reload_wait_with_pings(start_lmsd, emulator):
    from tests.support.daemon import MODEL as LOADED

    emulator.models[LOADED].context_length = 4096  # the watcher raises it: a reload
    emulator.load_gate = gate = trio.Event()
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.1",
                              ping_interval="0.05")
    watcher = server.router.backends[0].watcher
    with trio.fail_after(10):
        while not watcher.reloading(LOADED):
            await trio.sleep(0.01)
    emulator.script(Reply(PrintedCall("glm", "Bash", ARGS, before="Reloaded.\n")))

    async def release() -> None:
        gate.set()

    raw = await held_stream(server, release, started=lambda: watcher.reloading(LOADED))
    verdict, events = undamaged(raw, "complete")
    assert list(tool_inputs(events).values()) == [ARGS]
    assert len(emulator.generations) == 1


async def test_a_failover_after_the_headers(start_lmsd, nursery):
    from tests.support.boxes import boxes, upstreams

    a, b = await boxes(nursery, "a", "b")
    server = await start_lmsd(a.url, upstreams=upstreams(a, b), poll_interval="60",
                              ping_interval="0.05")
    with trio.fail_after(10):
        while not all(x.watcher.polls for x in server.router.backends):
            await trio.sleep(0.01)
    a.emu.inject(Fault.hang())  # a fresh session goes to the first upstream, a
    b.emu.script(Reply(PrintedCall("harmony", "Bash", ARGS, before="Moved.\n")))
    raw = await held_stream(server, a.stop, started=lambda: bool(a.generations()),
                            headers={"x-session-id": "s-damage-failover"})
    verdict, events = undamaged(raw, "complete")
    assert [e.event for e in verdict.events].count("message_start") == 1
    assert list(tool_inputs(events).values()) == [ARGS]
    assert len(b.generations()) == 1


# -- what the engine's text may hold ----------------------------------------------------------


def utf16(text: str) -> str:
    """``text`` with its surrogate pairs joined, as a JavaScript string holds it."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16")


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_an_emoji_cut_between_two_chunks_by_utf16_units(start_lmsd, emulator, upstream):
    """A Node engine cuts text by UTF-16 units: each half of a surrogate pair arrives as a
    JSON escape of its own. lmsd once crashed on the first half, mid-stream."""
    server = await start_lmsd(emulator.url, **speak(emulator, upstream))
    emulator.chunk_size = 3
    halves = "ok\ud83d\ude00 and \U0001f600"  # in 3s: "ok\ud83d", "\ude00 a", ...
    command = "echo \ud83d\ude80"
    emulator.script(Reply(Text(halves), Call("Bash", {"command": command})))
    raw = await raw_stream(server)
    _, events = undamaged(raw, "complete")
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta"
                   and e["delta"]["type"] == "text_delta")
    assert utf16(text) == "ok\U0001f600 and \U0001f600"
    [args] = tool_inputs(events).values()
    assert utf16(args["command"]) == "echo \U0001f680"
    # the next turn, as the client sends the answer back (pairs joined), continues it
    [(_, block), (_, call)] = [(e["index"], e["content_block"]) for e in events
                               if e["type"] == "content_block_start"]
    history = [*BODY["messages"], {"role": "assistant", "content": [
        {"type": "text", "text": utf16(text)}, {**call, "input": {"command": utf16(command)}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"],
                                      "content": "\U0001f680"}]}]
    emulator.script(Reply(Text("done")))
    undamaged(await raw_stream(server, {**BODY, "messages": history}), "complete")
    if upstream == "responses":  # a chained upstream: the turn went as a delta
        assert emulator.generations[-1].previous_response_id == \
            emulator.generations[0].response_id


async def test_the_non_streamed_answer_after_a_damaged_stream_carries_the_same_text(
        start_lmsd, emulator):
    """After a damaged stream the CLI asks again with ``stream: false``: that answer must
    carry a split pair too (it was a 500)."""
    server = await start_lmsd(emulator.url)
    emulator.chunk_size = 3
    emulator.script(Reply(Text("ok\ud83d\ude00 and")))
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        response = await http.post("/v1/messages", json={**BODY, "stream": False})
    assert response.status_code == 200, response.text
    assert utf16(response.json()["content"][0]["text"]) == "ok\U0001f600 and"
