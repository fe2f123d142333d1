"""Upstream failures read and classified: every overflow wording real servers use (with N
and M pulled out), stale chains told apart from every other error, and the pre-send fit
check."""

import json

import pytest

from lmsd.protocol.anthropic.errors import from_failure, render
from lmsd.protocol.failures import (
    OVERFLOW,
    STALE,
    UNSUPPORTED,
    ContextOverflow,
    classify,
    event_failure,
    read_failure,
)
from lmsd.protocol.fit import LearnedLimits, check_fit, wants_exact_count
from tests.emulator.overflow import (
    BUDGET,
    MODES,
    MORE_WORDINGS,
    WORDINGS,
    overflow_body,
    overflow_message,
)

N, M = 24101, 24000

REAL_WORDINGS = [
    # LM Studio (llama.cpp engine)
    ("Trying to keep the first 24101 tokens when context the overflows. However, the model is "
     "loaded with context length of only 24000 tokens, which is not enough. Try to load the "
     "model with a larger context length, or provide a shorter input"),
    # LM Studio / llama.cpp (the TUI showed it as a 502 and Claude Code retried 9 times)
    "Cannot truncate prompt with n_keep (24101) >= n_ctx (24000)",
    # LM Studio 0.4.25
    ("The number of tokens to keep from the initial prompt is greater than the context length "
     "(n_keep: 24101 >= n_ctx: 24000). Try to load the model with a larger context length, or "
     "provide a shorter input"),
    # llama-server
    ("request (24101 tokens) exceeds the available context size (24000 tokens), try "
     "increasing it"),
    # OpenAI
    ("This model's maximum context length is 24000 tokens. However, you requested 24101 "
     "tokens (24101 in the messages, 0 in the completion). Please reduce the length of the "
     "messages or completion."),
    # vLLM
    ("This model's maximum context length is 24000 tokens. However, your request has 24101 "
     "input tokens. Please reduce the length of the input messages."),
    # SGLang
    "The input (24101 tokens) is longer than the model's context length (24000 tokens).",
    # llama-cpp-python
    "Requested tokens (24101) exceed context window of 24000",
    # an Anthropic-native engine
    "prompt is too long: 24101 tokens > 24000 maximum",
    # vLLM's engine check
    ("The decoder prompt (length 24101) is longer than the maximum model length of 24000. "
     "Make sure that `max_model_len` is no smaller than the number of text tokens."),
]


@pytest.mark.parametrize("message", REAL_WORDINGS)
def test_every_real_overflow_wording_is_an_overflow_with_its_numbers(message):
    failure = classify(message)
    assert (failure.kind, failure.prompt_tokens, failure.context_limit) == (OVERFLOW, N, M)
    error = from_failure(failure, 500)
    assert (error.status, error.type) == (400, "invalid_request_error")
    assert error.message == "prompt is too long: 24101 tokens > 24000 maximum"


@pytest.mark.parametrize("wording", WORDINGS)
@pytest.mark.parametrize("status", [400, 500])
def test_every_emulated_body_maps_to_prompt_too_long(wording, status):
    failure = read_failure(overflow_body(wording, N, M, status), status)
    assert (failure.kind, failure.prompt_tokens, failure.context_limit) == (OVERFLOW, N, M)
    assert from_failure(failure, status).message == \
        "prompt is too long: 24101 tokens > 24000 maximum"


def test_lmstudio_error_events_hold_a_json_string_and_still_count():
    """Captured from LM Studio through Codex: the message is the error body, JSON-encoded."""
    inner = json.dumps({"error": {"message": overflow_message("lmstudio_n_keep", N, M)}})
    failure = event_failure({"type": "error", "message": inner})
    assert (failure.kind, failure.prompt_tokens, failure.context_limit) == (OVERFLOW, N, M)


def test_response_failed_overflow_and_garbage():
    failed = {"type": "response.failed", "response": {"status": "failed", "error": {
        "code": "server_error", "message": overflow_message("lmstudio_0425", N, M)}}}
    assert event_failure(failed).kind == OVERFLOW
    assert event_failure({"type": "response.failed", "response": "garbage"}).kind == ""
    assert event_failure({"type": "response.failed"}).message == ""


def test_structured_counts_win_and_bare_codes_still_count():
    failure = read_failure({"error": {"code": 400, "type": "exceed_context_size_error",
                                      "message": "context full", "n_prompt_tokens": 9000,
                                      "n_ctx": 8192}})
    assert (failure.kind, failure.prompt_tokens, failure.context_limit) == (OVERFLOW, 9000,
                                                                            8192)
    assert read_failure({"error": {"code": "context_length_exceeded", "message": "no"}}
                        ).overflow
    assert classify("the input length exceeds the context length").overflow  # Ollama


def test_vllm_output_budget_overflow_leaves_the_prompt_its_share():
    failure = classify("'max_tokens' or 'max_completion_tokens' is too large: 8000. This "
                       "model's maximum context length is 32768 tokens and your request "
                       "has 26000 input tokens (8000 > 32768 - 26000). None")
    assert (failure.kind, failure.prompt_tokens, failure.context_limit) == (OVERFLOW, 26000,
                                                                            24768)


BUDGET_WORDINGS = [
    # vLLM 0.25 (renderers/params.py), exact and truncated counts
    ("This model's maximum context length is 32768 tokens. However, you requested 8000 "
     "output tokens and your prompt contains 26000 input tokens, for a total of 34000 tokens. "
     "Please reduce the length of the input prompt or the number of requested output "
     "tokens."),
    ("This model's maximum context length is 32768 tokens. However, you requested 8000 "
     "output tokens and your prompt contains at least 26000 input tokens, for a total of at "
     "least 34000 tokens. Please reduce the length of the input prompt or the number of "
     "requested output tokens. (parameter=input_tokens, value=34000)"),
    # SGLang
    ("Requested token count exceeds the model's maximum context length of 32768 tokens. You "
     "requested a total of 34000 tokens: 26000 tokens from the input messages and 8000 "
     "tokens for the completion. Please reduce the number of tokens in the input messages "
     "or the completion to fit within the limit."),
    # Anthropic's own
    ("input length and `max_tokens` exceed context limit: 26000 + 8000 > 32768, decrease "
     "input length or `max_tokens` and try again"),
]


@pytest.mark.parametrize("message", BUDGET_WORDINGS)
def test_prompt_plus_output_budget_overflows_leave_the_prompt_its_share(message):
    """The prompt is N, never the output budget the words also name; the limit is what the
    window leaves it: 32768 - 8000."""
    failure = classify(message)
    assert (failure.kind, failure.prompt_tokens, failure.context_limit) == (OVERFLOW, 26000,
                                                                            24768)
    wrapped = read_failure({"type": "error", "error": {"type": "BadRequestError",
                                                      "message": message}}, 400)
    assert (wrapped.prompt_tokens, wrapped.context_limit) == (26000, 24768)


@pytest.mark.parametrize("wording", MORE_WORDINGS)
@pytest.mark.parametrize("status", [400, 500])
def test_every_messages_engine_body_maps_to_prompt_too_long(wording, status):
    failure = read_failure(overflow_body(wording, N, M, status, output=100), status)
    limit = M - 100 if wording in BUDGET else M
    assert (failure.kind, failure.prompt_tokens, failure.context_limit) == (OVERFLOW, N,
                                                                            limit)


@pytest.mark.parametrize(("body", "status", "kind"), [
    ({"error": {"message": "Previous response with id 'resp_1' not found.",
                "code": "previous_response_not_found"}}, 400, STALE),
    ({"error": {"message": "Previous response with id 'resp_1' not found."}}, 500, STALE),
    ("Prediction history node with id 'n1' not found while attempting to build chat history "
     "chain", 500, STALE),
    ({"error": {"message": "Not found"}}, 404, STALE),  # an unknown-id 404
    ({"error": {"message": "llama-server does not support 'previous_response_id'"}}, 400,
     UNSUPPORTED),
    # everything else is the error it says, never a stale chain
    ({"error": {"message": "Unsupported image format"}}, 400, ""),
    ({"error": {"message": "Model crashed (exit code 137)"}}, 500, ""),
    ({"error": {"message": "Model 'x' not found", "code": "model_not_found"}}, 404, ""),
    ({"error": {"message": "server busy"}}, 503, ""),
    ({"error": {"message": overflow_message("lmstudio", N, M)}}, 400, OVERFLOW),
])
def test_only_a_missing_stored_response_is_a_stale_chain(body, status, kind):
    assert read_failure(body, status).kind == kind


def test_stale_and_unsupported_errors_are_marked_for_the_exchange():
    error = from_failure(read_failure({"error": {
        "message": "Previous response with id 'resp_1' not found."}}, 400), 400)
    assert (error.status, error.kind) == (400, STALE)
    crash = from_failure(read_failure({"error": {"message": "Model crashed"}}, 500), 500)
    assert (crash.status, crash.type, crash.kind) == (502, "api_error", "")


def test_every_mode_and_wording_is_listed_for_the_fault_suite():
    assert set(MODES) == {"http400", "http500", "stream_error", "response_failed"}
    assert len(WORDINGS) == 6


# -- fit before sending ----------------------------------------------------------------------


def test_a_prompt_that_cannot_fit_is_refused_before_sending():
    assert check_fit(1000, None) is None  # unknown limit: send it
    assert check_fit(4500, 4096) is None  # over, but within the estimate's error: send it
    overflow = check_fit(6200, 4096)  # over by more than any tokenizer could explain
    assert isinstance(overflow, ContextOverflow)
    error = render(overflow)  # as the Anthropic front answers it
    assert error.status == 400
    assert error.message == "prompt is too long: 6200 tokens > 4096 maximum"
    # an exact count decides either way
    assert check_fit(9000, 4096, exact=4000) is None
    exact = check_fit(3500, 4096, exact=4200)
    assert isinstance(exact, ContextOverflow)
    assert render(exact).message == "prompt is too long: 4200 tokens > 4096 maximum"


def test_the_tokenizer_is_asked_only_near_the_limit():
    assert not wants_exact_count(1000, 4096)
    assert not wants_exact_count(1000, None)
    assert wants_exact_count(3100, 4096)


def test_learned_limits_expire_and_stay_bounded():
    limits = LearnedLimits(ttl=60)
    limits.learn("http://a", "m", 8192, now=0)
    assert limits.get("http://a", "m", now=59) == 8192
    assert limits.get("http://b", "m", now=1) is None
    assert limits.get("http://a", "m", now=61) is None  # the user may have reloaded it
    limits.learn("http://a", "m", 0, now=0)  # an overflow without numbers teaches nothing
    for i in range(300):
        limits.learn("http://a", f"m{i}", 100, now=0)
    assert len(limits._limits) <= 256
