"""The overflow matrix as pure logic: every wording real servers use x every shape and
transport that delivers it (an HTTP 400 or 500 body, an SSE ``error`` event, a
``response.failed``, a chat error chunk, a Messages ``error`` event), read by the very
functions lmsd's upstream client and stream decoders call, ends as the one error Claude
Code compacts on, 400 ``prompt is too long: N tokens > M maximum``, and as OpenAI's
``context_length_exceeded``; and is never a stale chain (a stale chain is resent in full
and loses its node; an overflow must do neither).

No HTTP here: tests/fronts/test_overflow.py keeps a thin sample of each transport through
lmsd, so the wiring (before or inside the stream, plain or streamed) stays tested.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from lmsd.protocol.anthropic.decode import MessagesDecoder
from lmsd.protocol.anthropic.errors import render
from lmsd.protocol.chat.decode import ChatDecoder
from lmsd.protocol.failures import (
    OVERFLOW,
    ContextOverflow,
    Failure,
    StaleChain,
    as_error,
    read_raw_failure,
)
from lmsd.protocol.openai_errors import CONTEXT_LENGTH_EXCEEDED, render_openai
from lmsd.protocol.pivot import Failed, Started
from lmsd.protocol.responses.decode import ResponsesDecoder
from tests.emulator.messages import error_body, stream_error
from tests.emulator.overflow import (
    BUDGET,
    MODES,
    MORE_WORDINGS,
    WORDINGS,
    failed_error,
    overflow_error,
    overflow_event,
)
from tests.protocol.test_failures import BUDGET_WORDINGS, REAL_WORDINGS

N, M, OUTPUT = 4476, 4096, 50
NAME = "LM Studio"
ALL_WORDINGS = WORDINGS + MORE_WORDINGS


# -- what lmsd's code makes of each delivery ----------------------------------------------------


def from_http(body: Any, status: int) -> Failure:
    """An HTTP error answer, as the upstream client reads it (``_http_error``)."""
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return as_error(read_raw_failure(raw, status), status, name=NAME)


def failed_of(out: list[Any]) -> Failure:
    """The one failure a decoder reported, after at most a start."""
    *before, last = out
    assert all(isinstance(e, Started) for e in before), out
    assert isinstance(last, Failed), out
    return last.error


def from_responses_stream(events: list[dict[str, Any]]) -> Failure:
    decoder = ResponsesDecoder("msg_0123456789abcdef", upstream_name=NAME)
    return failed_of([p for e in events for p in decoder.feed(e)])


def from_chat_chunk(payload: Any) -> Failure:
    decoder = ChatDecoder("msg_0123456789abcdef", upstream_name=NAME)
    return failed_of(decoder.feed(json.dumps(payload)))


def from_messages_event(data: dict[str, Any]) -> Failure:
    decoder = MessagesDecoder("msg_0123456789abcdef", upstream_name=NAME)
    return failed_of(decoder.feed(data, "error"))


def assert_compacts(failure: Failure, n: int, m: int) -> None:
    """The overflow with its numbers, as Claude Code and OpenAI clients are told it."""
    assert isinstance(failure, ContextOverflow), failure
    assert not isinstance(failure, StaleChain)  # kept node, no full resend
    assert (failure.prompt_tokens, failure.context_limit) == (n, m)  # M is learned
    anthropic = render(failure)
    assert (anthropic.status, anthropic.type, anthropic.kind) == (400, "invalid_request_error",
                                                                  OVERFLOW)
    assert anthropic.body() == {"type": "error", "error": {
        "type": "invalid_request_error",
        "message": f"prompt is too long: {n} tokens > {m} maximum"}}
    openai = render_openai(failure)
    assert (openai.status, openai.code) == (400, CONTEXT_LENGTH_EXCEEDED)


# -- the emulator's servers: wording x transport x upstream kind --------------------------------


def responses_delivery(wording: str, mode: str) -> Failure:
    """What a Responses server (LM Studio, llama-server's /v1/responses) sends in ``mode``,
    exactly as tests/emulator/app.py sends it."""
    status = 500 if mode == "http500" else 400
    error = overflow_error(wording, N, M, status, OUTPUT)  # type: ignore[arg-type]
    if mode in ("http400", "http500"):
        return from_http(error.body(), status)
    created = {"type": "response.created", "response": {"id": "resp_1",
                                                        "status": "in_progress"}}
    if mode == "stream_error":
        return from_responses_stream([created, overflow_event(error, wording)])  # type: ignore[arg-type]
    in_progress = {"type": "response.in_progress", "response": created["response"]}
    failed = {"type": "response.failed", "response": {
        "id": "resp_1", "status": "failed", "error": failed_error(error)}}
    return from_responses_stream([created, in_progress, failed])


def chat_delivery(wording: str, mode: str) -> Failure:
    """A Chat Completions server: an HTTP error, or (in a stream) the error body as a
    ``data:`` chunk (tests/emulator/chat.py)."""
    status = 500 if mode == "http500" else 400
    error = overflow_error(wording, N, M, status, OUTPUT)  # type: ignore[arg-type]
    if mode in ("http400", "http500"):
        return from_http(error.body(), status)
    return from_chat_chunk(error.body())


def messages_delivery(wording: str, mode: str, flavor: str) -> Failure:
    """A Messages server (llama-server's or an Anthropic-native engine's /v1/messages): its
    HTTP error body, or an ``event: error`` (tests/emulator/messages.py)."""
    status = 500 if mode == "http500" else 400
    error = overflow_error(wording, N, M, status, OUTPUT)  # type: ignore[arg-type]
    emu = SimpleNamespace(messages_flavor=flavor)
    if mode in ("http400", "http500"):
        return from_http(error_body(emu, error), status)  # type: ignore[arg-type]
    return from_messages_event(stream_error(emu, error))  # type: ignore[arg-type]


def limit_of(wording: str) -> int:
    """What the prompt may use: the window, less the output budget the words name."""
    return M - OUTPUT if wording in BUDGET else M


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wording", ALL_WORDINGS)
def test_a_responses_server_overflow_in_every_wording_and_transport(wording, mode):
    assert_compacts(responses_delivery(wording, mode), N, limit_of(wording))


@pytest.mark.parametrize("mode", MODES)  # response_failed: a chat stream has only one way
@pytest.mark.parametrize("wording", ALL_WORDINGS)
def test_a_chat_server_overflow_in_every_wording_and_transport(wording, mode):
    assert_compacts(chat_delivery(wording, mode), N, limit_of(wording))


@pytest.mark.parametrize("mode", ["http400", "http500", "stream_error"])
@pytest.mark.parametrize("wording", ALL_WORDINGS)
def test_a_messages_server_overflow_in_every_wording_and_transport(wording, mode):
    flavor = "llama_server" if wording == "llama_server" else "anthropic"
    assert_compacts(messages_delivery(wording, mode, flavor), N, limit_of(wording))


# -- every real engine's words, in every shape an error body or event takes --------------------


def shapes(message: str) -> dict[str, Failure]:
    """One message, delivered every way a server may: the shapes ``_fields`` reads."""
    lmstudio_event = json.dumps({"error": {"message": message}})
    return {
        "openai_body_400": from_http({"error": {"message": message, "type":
                                                "invalid_request_error", "code": None}}, 400),
        "openai_body_500": from_http({"error": {"message": message, "type": "internal_error",
                                                "param": None, "code": None}}, 500),
        "vllm_flat_body": from_http({"object": "error", "message": message,
                                     "type": "BadRequestError", "param": None, "code": 400},
                                    400),
        "string_error_body": from_http({"error": message}, 500),
        "detail_body": from_http({"detail": message}, 400),  # FastAPI (llama-cpp-python)
        "plain_text_body": from_http(message, 500),
        "anthropic_body": from_http({"type": "error", "error": {"type": "invalid_request_error",
                                                                "message": message}}, 400),
        "sse_error_event": from_responses_stream([{"type": "error", "message": message}]),
        "lmstudio_json_string_event": from_responses_stream([{"type": "error",
                                                              "message": lmstudio_event}]),
        "response_failed": from_responses_stream([{"type": "response.failed", "response": {
            "status": "failed", "error": {"code": "server_error", "message": message}}}]),
        "chat_error_chunk": from_chat_chunk({"error": {"message": message, "code": 400}}),
        "chat_flat_chunk": from_chat_chunk({"object": "error", "message": message}),
        "messages_error_event": from_messages_event({"type": "error", "error": {
            "type": "invalid_request_error", "message": message}}),
    }


SHAPES = list(shapes("x"))
#: Who says each of REAL_WORDINGS, in its order (the ids of the cases).
ENGINES = ["lmstudio", "lmstudio_n_keep", "lmstudio_0425", "llama_server", "openai", "vllm",
           "sglang", "llama_cpp_python", "anthropic", "vllm_decoder"]
BUDGETS = ["vllm_0.25", "vllm_0.25_at_least", "sglang", "anthropic"]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("message", REAL_WORDINGS, ids=ENGINES)
def test_every_real_wording_in_every_shape_compacts(message, shape):
    """LM Studio (three wordings), llama-server, llama-cpp-python, vLLM (two), SGLang,
    OpenAI and an Anthropic-native engine: N 24101, M 24000 however it came."""
    assert_compacts(shapes(message)[shape], 24101, 24000)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("message", BUDGET_WORDINGS, ids=BUDGETS)
def test_every_budget_wording_in_every_shape_leaves_the_prompt_its_share(message, shape):
    """vLLM 0.25, SGLang and Anthropic name the output budget too: M is 32768 - 8000."""
    assert_compacts(shapes(message)[shape], 26000, 24768)


@pytest.mark.parametrize("shape", SHAPES)
def test_ollama_words_without_numbers_still_compact(shape):
    """Ollama says no numbers: still an overflow (Claude Code compacts; lmsd learns
    nothing), rendered with the estimate when the front has one."""
    failure = shapes("the input length exceeds the context length")[shape]
    assert isinstance(failure, ContextOverflow) and not isinstance(failure, StaleChain)
    assert (failure.prompt_tokens, failure.context_limit) == (0, 0)
    assert render(failure, estimate=5000).message == \
        "prompt is too long: 5000 tokens > 4999 maximum"
    assert render_openai(failure).code == CONTEXT_LENGTH_EXCEEDED


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("message", ["Model crashed (exit code 137)",
                                     "Unsupported image format",
                                     "model unloaded during generation"],
                         ids=["crash", "image", "unloaded"])
def test_other_errors_in_every_shape_are_neither_overflow_nor_stale(message, shape):
    """The other half of the matrix: a crash or a bad image is told as itself."""
    failure = shapes(message)[shape]
    assert not isinstance(failure, (ContextOverflow, StaleChain)), failure
    assert "prompt is too long" not in render(failure).message
    assert render_openai(failure).code != CONTEXT_LENGTH_EXCEEDED
