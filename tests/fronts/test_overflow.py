"""Overflow through lmsd: a thin sample of every transport (HTTP 400, HTTP 500, an SSE
``error`` event, ``response.failed``; a chat error chunk) x streamed or not x first or
chained turn ends as the one error Claude Code compacts on: 400 ``prompt is too long: N
tokens > M maximum``. Every wording in every shape is pure logic, tested without HTTP in
tests/protocol/test_overflow_matrix.py; here each wording appears once, so the wiring (before
or inside the stream, plain or streamed) stays tested. Plus the pre-send refusal, and stale
chains told apart from every other error."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.emulator import Emulator, Fault, Reply, Text
from tests.emulator.overflow import MODES, WORDINGS
from tests.support.anthropic_checks import check_stream, parse_sse
from tests.support.overflow_cases import sample, values

MODEL = "qwen/qwen3-coder-30b"
CONTEXT = 400
SESSION = {"X-Claude-Code-Session-Id": "overflow-1"}


def words(n: int) -> str:
    """n emulator tokens that lmsd estimates at about 1.15 tokens each: over the context
    for the engine, but within the estimate's margin, so lmsd must send them."""
    return " ".join(["abc"] * n)


def payload(messages: list[dict[str, Any]], stream: bool) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-6", "max_tokens": 50, "stream": stream,
            "messages": messages}


async def post(server, messages, stream: bool) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.post("/v1/messages", json=payload(messages, stream), headers=SESSION)


def chats(emulator: Emulator) -> list[Any]:
    return [r for r in emulator.log if r.path == "/v1/chat/completions"]


def error_of(response: httpx.Response, stream: bool) -> dict[str, Any]:
    if not stream:
        assert response.status_code == 400, response.text
        return response.json()["error"]
    assert response.status_code == 200
    events = parse_sse(response.content)
    assert check_stream(events) == "error"
    return events[-1]["error"]


async def overflowing_server(start_lmsd, emulator: Emulator, wording: str, mode: str):
    emulator.overflow_wording, emulator.overflow_mode = wording, mode  # type: ignore[assignment]
    emulator.models[MODEL].context_length = CONTEXT
    return await start_lmsd(emulator.url)


#: Each transport both plain and streamed, each wording once (the Responses upstream).
FIRST_TURN = sample(("lmstudio", "http400", False), ("vllm", "http400", True),
                    ("lmstudio_0425", "http500", True), ("openai", "http500", False),
                    ("llama_server", "stream_error", False),
                    ("lmstudio_n_keep", "stream_error", True),
                    ("lmstudio", "response_failed", True),
                    ("lmstudio_0425", "response_failed", False))
#: A chained turn in each transport.
CHAINED = sample(("lmstudio_n_keep", "http400", True), ("llama_server", "http500", False),
                 ("lmstudio_0425", "stream_error", False), ("openai", "response_failed", True))
#: A Chat Completions upstream: before the stream, and inside it (its error chunk).
CHAT = sample(("llama_server", "http400", False), ("vllm", "http500", True),
              ("lmstudio", "stream_error", True), ("llama_server", "stream_error", False))


def test_the_sample_covers_every_wording_and_transport():
    """Thin, but no wording or transport left out of the HTTP sample."""
    assert {w for w, _, _ in values(FIRST_TURN + CHAINED + CHAT)} == set(WORDINGS)
    assert {(m, s) for _, m, s in values(FIRST_TURN)} == {(m, s) for m in MODES
                                                          for s in (False, True)}
    assert {m for _, m, _ in values(CHAINED)} == set(MODES)
    assert {(m, s) for _, m, s in values(CHAT)} >= {("http400", False), ("http500", True),
                                                    ("stream_error", False),
                                                    ("stream_error", True)}


@pytest.mark.parametrize(("wording", "mode", "stream"), FIRST_TURN)
async def test_first_turn_overflow(start_lmsd, emulator, wording, mode, stream):
    server = await overflowing_server(start_lmsd, emulator, wording, mode)
    response = await post(server, [{"role": "user", "content": words(CONTEXT + 20)}], stream)
    error = error_of(response, stream)
    [gen] = emulator.generations  # one attempt: never retried
    assert error["type"] == "invalid_request_error"
    assert error["message"] == f"prompt is too long: {gen.input_tokens} tokens > {CONTEXT} " \
        "maximum"


@pytest.mark.parametrize(("wording", "mode", "stream"), CHAINED)
async def test_chained_turn_overflow_keeps_the_node(start_lmsd, emulator, wording, mode,
                                                   stream):
    server = await overflowing_server(start_lmsd, emulator, wording, mode)
    emulator.script(Reply(Text("first answer")), Reply(Text("after compaction")))
    history = [{"role": "user", "content": "hi"}]
    first = await post(server, history, False)
    assert first.status_code == 200, first.text
    history.append({"role": "assistant", "content": first.json()["content"]})
    nodes = server.store.node_count()
    big = [*history, {"role": "user", "content": words(CONTEXT + 20)}]
    error = error_of(await post(server, big, stream), stream)
    gens = emulator.generations
    assert [g.status for g in gens] == [200, {"http400": 400, "http500": 500}.get(mode, 200)]
    assert gens[1].previous_response_id == gens[0].response_id  # it was chained
    assert error["message"] == f"prompt is too long: {gens[1].input_tokens} tokens > " \
        f"{CONTEXT} maximum"
    # no full resend (it would only overflow again), and the node stays: the next turn
    # (after Claude Code compacts) still chains on it
    assert server.store.node_count() == nodes
    small = await post(server, [*history, {"role": "user", "content": "shorter"}], False)
    assert small.status_code == 200, small.text
    assert emulator.generations[-1].previous_response_id == gens[0].response_id


@pytest.mark.parametrize(("wording", "mode", "stream"), CHAT)
async def test_chat_upstream_overflow(start_lmsd, emulator, wording, mode, stream):
    """The same wordings from a Chat Completions server (llama-server and others stream the
    error body as a ``data:`` chunk)."""
    emulator.overflow_wording, emulator.overflow_mode = wording, mode  # type: ignore[assignment]
    emulator.models[MODEL].context_length = CONTEXT
    server = await start_lmsd(emulator.url, upstream_api="chat")
    response = await post(server, [{"role": "user", "content": words(CONTEXT + 20)}], stream)
    error = error_of(response, stream)
    [gen] = chats(emulator)
    assert error["message"] == f"prompt is too long: {gen.input_tokens} tokens > {CONTEXT} " \
        "maximum"


# -- refused before sending ------------------------------------------------------------------


async def test_a_prompt_far_over_the_loaded_context_costs_no_prefill(start_lmsd, emulator):
    """LM Studio lists each instance's loaded context: a prompt lmsd knows cannot fit is
    answered at once, and the engine never sees it."""
    emulator.models[MODEL].context_length = CONTEXT
    server = await start_lmsd(emulator.url)
    for stream in (False, True):
        response = await post(server, [{"role": "user", "content": words(CONTEXT * 3)}],
                              stream)
        assert response.status_code == 400, response.text  # before any stream starts
        message = response.json()["error"]["message"]
        assert message.startswith("prompt is too long: ")
        assert message.endswith(f" > {CONTEXT} maximum")
    assert emulator.generations == []
    events = [e for e in server.bus.recent if e["type"] == "request.too_long"]
    assert events and events[0]["context_length"] == CONTEXT


async def test_an_engine_that_lists_no_context_teaches_it_by_overflowing(start_lmsd,
                                                                         emulator):
    """A Chat Completions server lists no context; its first overflow states M, and the
    doomed retries that follow (Claude Code trims and retries while compacting) are answered
    without a prefill."""
    emulator.overflow_wording, emulator.lmstudio_api = "llama_server", False
    emulator.models[MODEL].context_length = CONTEXT
    server = await start_lmsd(emulator.url, upstream_api="chat", model=MODEL)
    huge = [{"role": "user", "content": words(CONTEXT * 3)}]
    first = await post(server, huge, False)
    assert first.status_code == 400
    assert len(chats(emulator)) == 1
    again = await post(server, huge, False)
    assert again.status_code == 400
    assert again.json()["error"]["message"].endswith(f" > {CONTEXT} maximum")
    assert len(chats(emulator)) == 1  # not sent
    fits = await post(server, [{"role": "user", "content": "hi"}], False)
    assert fits.status_code == 200


# -- a stale chain is only a stale chain ------------------------------------------------------


@pytest.mark.parametrize("fault", [
    Fault.error_event(after_events=1, message="Model crashed (exit code 137)",
                      code="server_error"),
    Fault.http(400, "Unsupported image format"),
    Fault.http(500, "Model crashed (exit code 137)"),
    Fault.failed("model unloaded during generation", code="server_error"),
], ids=["error_event", "http400", "http500", "response_failed"])
async def test_other_errors_on_a_chained_turn_keep_the_node(start_lmsd, emulator, fault):
    """A crash or a bad image is not a missing stored response: the client gets that error,
    nothing is resent in full, and the next turn still chains on the node."""
    server = await start_lmsd(emulator.url)
    emulator.script(Reply(Text("first answer")))
    history = [{"role": "user", "content": "hi"}]
    first = await post(server, history, False)
    history.append({"role": "assistant", "content": first.json()["content"]})
    nodes = server.store.node_count()
    emulator.inject(fault)
    failed = await post(server, [*history, {"role": "user", "content": "next"}], False)
    assert failed.status_code in (400, 502), failed.text
    assert "prompt is too long" not in failed.text
    gens = emulator.generations
    assert len(gens) == 2 and gens[1].previous_response_id == gens[0].response_id
    assert server.store.node_count() == nodes
    stale = [e for e in server.bus.recent if e["type"] == "chain.stale"]
    assert stale == []
    # another request (the same one, refused by the engine moments ago, would be answered
    # from that refusal without the engine: protocol/clients/resends.py)
    retry = await post(server, [*history, {"role": "user", "content": "next, please"}], False)
    assert retry.status_code == 200, retry.text
    assert emulator.generations[-1].previous_response_id == gens[0].response_id


async def test_a_missing_stored_response_is_resent_in_full_once(start_lmsd, emulator):
    server = await start_lmsd(emulator.url)
    emulator.script(Reply(Text("first answer")))
    history = [{"role": "user", "content": "hi"}]
    first = await post(server, history, False)
    history.append({"role": "assistant", "content": first.json()["content"]})
    emulator.wipe_history()  # LM Studio restarted: its stored responses are gone
    again = await post(server, [*history, {"role": "user", "content": "next"}], True)
    check_stream(parse_sse(again.content), complete=True)
    gens = emulator.generations
    assert [g.status for g in gens] == [200, 400, 200]
    assert gens[1].previous_response_id and not gens[2].previous_response_id
    [stale] = [e for e in server.bus.recent if e["type"] == "chain.stale"]
    assert stale["why"] == "stale_chain"


async def test_overflows_are_counted_by_where_they_were_caught(start_lmsd, emulator):
    emulator.models[MODEL].context_length = CONTEXT
    server = await start_lmsd(emulator.url)
    await post(server, [{"role": "user", "content": words(CONTEXT * 3)}], False)  # refused
    await post(server, [{"role": "user", "content": words(CONTEXT + 20)}], False)  # engine
    async with httpx.AsyncClient(base_url=server.admin_url) as admin:
        text = (await admin.get("/metrics")).text
    assert 'lmsd_context_overflows_total{front="anthropic",where="before_sending"} 1.0' in text
    assert 'lmsd_context_overflows_total{front="anthropic",where="engine"} 1.0' in text
