"""``MessagesDialect``'s I/O against scripted HTTP answers (httpx's MockTransport): what it
sends, how it reads a stream, a JSON body where a stream was asked for, an HTTP error, and
the engine's token count."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from lmsd.protocol.failures import ContextOverflow, UpstreamBroken
from lmsd.protocol.pivot import Failed, Finished, Started, TextDelta, TextDone, Usage
from lmsd.upstreams.client import Upstream
from lmsd.upstreams.dialect import MessagesDialect


def dialect_answering(handler) -> tuple[MessagesDialect, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    upstream = Upstream("http://engine.test")
    upstream.client = httpx.AsyncClient(base_url="http://engine.test",
                                        transport=httpx.MockTransport(record))
    upstream.name = MessagesDialect.server_name
    return MessagesDialect(upstream, "test"), seen


def streamed(body: bytes, content_type: str = "text/event-stream") -> httpx.Response:
    """A 200 whose body arrives as a stream, in two pieces."""
    async def pieces():
        yield body[: len(body) // 2]
        yield body[len(body) // 2:]
    return httpx.Response(200, content=pieces(), headers={"content-type": content_type})


def sse(*events: tuple[str, dict[str, Any]]) -> bytes:
    return b"".join(f"event: {n}\ndata: {json.dumps(d)}\n\n".encode() for n, d in events)


async def answer(dialect: MessagesDialect, body=None, headers=None) -> list:
    out = []
    async with dialect.stream(body or {"model": "m", "stream": True}, message_id="msg_1",
                              headers=headers) as batches:
        async for batch in batches:
            out += batch
    return out


async def test_a_llama_server_stream_with_its_keepalive_comments_and_no_done():
    body = b":\n\n" + sse(
        ("message_start", {"type": "message_start", "message": {
            "id": "chatcmpl-1", "usage": {"input_tokens": 3, "cache_read_input_tokens": 7}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "hi"}}),
    ) + b":\n\n" + sse(
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                           "usage": {"output_tokens": 1}}),
        ("message_stop", {"type": "message_stop"}))
    dialect, seen = dialect_answering(lambda r: streamed(body))
    out = await answer(dialect, headers={"x-session-affinity": "s1"})
    assert out == [Started("chatcmpl-1"), TextDelta("text_0", "hi"), TextDone("text_0"),
                   Finished("end", Usage(10, 7, 1, prefilled_tokens=3))]
    [request] = seen
    assert request.url.path == "/v1/messages"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["x-session-affinity"] == "s1"


async def test_an_error_event_mid_stream_and_an_http_error_before_it():
    body = sse(("message_start", {"type": "message_start", "message": {"id": "x"}}),
               ("error", {"code": 500, "message": "request (900 tokens) exceeds the "
                          "available context size (512 tokens), try increasing it",
                          "type": "exceed_context_size_error", "n_prompt_tokens": 900,
                          "n_ctx": 512}))
    dialect, _ = dialect_answering(lambda r: streamed(body))
    out = await answer(dialect)
    assert isinstance(out[-1], Failed) and isinstance(out[-1].error, ContextOverflow)
    assert out[-1].error.context_limit == 512
    refused = {"type": "error", "error": {"type": "invalid_request_error",
                                          "message": "prompt is too long: 900 tokens > 512 "
                                                     "maximum"}}
    dialect, _ = dialect_answering(lambda r: httpx.Response(400, json=refused))
    with pytest.raises(ContextOverflow) as info:
        await answer(dialect)
    assert (info.value.prompt_tokens, info.value.context_limit) == (900, 512)


@pytest.mark.parametrize(("whole", "expected"), [
    ({"id": "msg_w", "type": "message", "content": [{"type": "text", "text": "hello"}],
      "stop_reason": "max_tokens", "usage": {"input_tokens": 5, "output_tokens": 1}},
     [Started("msg_w"), TextDelta("text_0", "hello"), TextDone("text_0"),
      Finished("length", Usage(5, 0, 1))]),
])
async def test_a_json_answer_where_a_stream_was_asked_for(whole, expected):
    dialect, _ = dialect_answering(lambda r: httpx.Response(200, json=whole))
    assert await answer(dialect) == expected


async def test_a_200_that_is_an_error_or_nothing_at_all():
    junk = {"error": "Unexpected endpoint or method. (POST /v1/messages). Returning 200 "
                     "anyway"}
    dialect, _ = dialect_answering(lambda r: httpx.Response(200, json=junk))
    [failed] = await answer(dialect)
    assert isinstance(failed.error, UpstreamBroken)
    assert "Unexpected endpoint" in failed.error.message
    dialect, _ = dialect_answering(lambda r: streamed(b"<html>", "text/html"))
    [failed] = await answer(dialect)
    assert "neither an event stream nor JSON" in failed.error.message
    dialect, _ = dialect_answering(lambda r: streamed(b""))
    [failed] = await answer(dialect)
    assert failed.error.message.endswith("closed the stream before the response was "
                                         "complete")


async def test_count_tokens_asks_the_engine():
    def count(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "served-model"}]})
        if request.method == "GET":  # LM Studio's listings: not this server
            return httpx.Response(404)
        body = json.loads(request.content)
        assert request.headers["anthropic-version"] == "2023-06-01"
        assert body == {"model": body["model"], "messages": [
            {"role": "user", "content": [{"type": "text", "text": "some text"}]}]}
        return httpx.Response(200, json={"input_tokens": 42 if body["model"] == "mine"
                                         else 7})

    dialect, seen = dialect_answering(count)
    assert await dialect.count_tokens("some text", model="mine") == 42
    assert await dialect.count_tokens("some text") == 7  # the first model it has loaded
    assert json.loads(seen[-1].content)["model"] == "served-model"
    for refusal in (httpx.Response(404, text="404 page not found"),
                    httpx.Response(200, json={"error": "Returning 200 anyway"}),
                    httpx.Response(200, json={"input_tokens": "many"})):
        dialect, _ = dialect_answering(lambda r, answer=refusal: answer)
        assert await dialect.count_tokens("x", model="m") is None
