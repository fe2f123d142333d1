"""Context overflow as each real server words, shapes and delivers it.

lmsd once passed every test while speaking only one of LM Studio's three wordings; the
emulator now speaks all of them, and the other engines' too, in every transport:

- wordings (``Emulator.overflow_wording``):
  - ``lmstudio``: "Trying to keep the first N tokens when context the overflows. However,
    the model is loaded with context length of only M tokens, which is not enough. ...";
  - ``lmstudio_n_keep``: "Cannot truncate prompt with n_keep (N) >= n_ctx (M)";
  - ``lmstudio_0425``: LM Studio 0.4.25, "The number of tokens to keep from the initial
    prompt is greater than the context length (n_keep: N >= n_ctx: M). ..." (its natural
    transport is HTTP 500 ``internal_error``);
  - ``llama_server``: ``exceed_context_size_error`` with ``n_prompt_tokens``/``n_ctx``;
  - ``openai``: "This model's maximum context length is M tokens. However, you requested N
    tokens ...", code ``context_length_exceeded``;
  - ``vllm``: "... However, your request has N input tokens ...", vLLM's flat error shape;
- and, in ``MORE_WORDINGS`` (the ``/v1/messages`` engines' tests use them all):
  - ``anthropic``: "prompt is too long: N tokens > M maximum" (an Anthropic-native engine);
  - ``vllm_budget``: vLLM 0.25, "... However, you requested X output tokens and your
    prompt contains N input tokens ..." (X is the request's ``max_tokens``);
  - ``vllm_decoder``: vLLM's engine check, "The decoder prompt (length N) is longer than
    the maximum model length of M";
  - ``sglang_budget``: SGLang, "... maximum context length of M tokens. You requested a
    total of T tokens: N tokens from the input messages and X tokens for the completion";
- transports (``Emulator.overflow_mode``): ``http400``, ``http500``, ``stream_error`` (an
  SSE ``error`` event after ``response.created``; a ``data: {"error": ...}`` chunk on chat)
  and ``response_failed`` (``response.failed``; on chat, the same as ``stream_error``).

LM Studio sends no ``code`` with its wordings, and its SSE ``error`` event carries the
whole error body as a JSON string in ``message`` (captured from Codex CLI 0.171 traffic).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from .validate import ApiError

OverflowWording = Literal["lmstudio", "lmstudio_n_keep", "lmstudio_0425", "llama_server",
                          "openai", "vllm", "anthropic", "vllm_budget", "vllm_decoder",
                          "sglang_budget"]
OverflowMode = Literal["http400", "http500", "stream_error", "response_failed"]
WORDINGS: tuple[OverflowWording, ...] = ("lmstudio", "lmstudio_n_keep", "lmstudio_0425",
                                         "llama_server", "openai", "vllm")
MORE_WORDINGS: tuple[OverflowWording, ...] = ("anthropic", "vllm_budget", "vllm_decoder",
                                              "sglang_budget")
#: The wordings whose limit is what the prompt may use: the window less the output budget.
BUDGET = ("vllm_budget", "sglang_budget")
MODES: tuple[OverflowMode, ...] = ("http400", "http500", "stream_error", "response_failed")
LMSTUDIO = ("lmstudio", "lmstudio_n_keep", "lmstudio_0425")


def overflow_message(wording: OverflowWording, n: int, m: int, output: int = 0) -> str:
    """The words; ``output`` is the request's output budget (the budget wordings)."""
    if wording == "lmstudio":
        return (f"Trying to keep the first {n} tokens when context the overflows. However, "
                f"the model is loaded with context length of only {m} tokens, which is not "
                "enough. Try to load the model with a larger context length, or provide a "
                "shorter input")
    if wording == "lmstudio_n_keep":
        return f"Cannot truncate prompt with n_keep ({n}) >= n_ctx ({m})"
    if wording == "lmstudio_0425":
        return ("The number of tokens to keep from the initial prompt is greater than the "
                f"context length (n_keep: {n} >= n_ctx: {m}). Try to load the model with a "
                "larger context length, or provide a shorter input")
    if wording == "llama_server":
        return (f"request ({n} tokens) exceeds the available context size ({m} tokens), try "
                "increasing it")
    if wording == "openai":
        return (f"This model's maximum context length is {m} tokens. However, you requested "
                f"{n} tokens ({n} in the messages, 0 in the completion). Please reduce the "
                "length of the messages or completion.")
    if wording == "anthropic":
        return f"prompt is too long: {n} tokens > {m} maximum"
    if wording == "vllm_budget":
        return (f"This model's maximum context length is {m} tokens. However, you requested "
                f"{output} output tokens and your prompt contains {n} input tokens, for a "
                f"total of {n + output} tokens. Please reduce the length of the input prompt "
                "or the number of requested output tokens.")
    if wording == "vllm_decoder":
        return (f"The decoder prompt (length {n}) is longer than the maximum model length of "
                f"{m}. Make sure that `max_model_len` is no smaller than the number of text "
                "tokens.")
    if wording == "sglang_budget":
        return (f"Requested token count exceeds the model's maximum context length of {m} "
                f"tokens. You requested a total of {n + output} tokens: {n} tokens from the "
                f"input messages and {output} tokens for the completion. Please reduce the "
                "number of tokens in the input messages or the completion to fit within the "
                "limit.")
    return (f"This model's maximum context length is {m} tokens. However, your request has "
            f"{n} input tokens. Please reduce the length of the input messages.")


def overflow_body(wording: OverflowWording, n: int, m: int, status: int, output: int = 0
                  ) -> dict[str, Any]:
    """The HTTP error body (also the chat stream's error chunk) as that server sends it."""
    message = overflow_message(wording, n, m, output)
    if wording in LMSTUDIO:
        kind = "internal_error" if status >= 500 else "invalid_request_error"
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}
    if wording == "llama_server":
        return {"error": {"code": status, "message": message,
                          "type": "exceed_context_size_error", "n_prompt_tokens": n,
                          "n_ctx": m}}
    if wording == "openai":
        return {"error": {"message": message, "type": "invalid_request_error",
                          "param": "messages", "code": "context_length_exceeded"}}
    if wording == "anthropic":
        kind = "api_error" if status >= 500 else "invalid_request_error"
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"object": "error", "message": message, "type": "BadRequestError", "param": None,
            "code": status}


def overflow_error(wording: OverflowWording, n: int, m: int, status: int, output: int = 0
                   ) -> ApiError:
    body = overflow_body(wording, n, m, status, output)
    err = body.get("error", body)
    code = err.get("code")
    return ApiError(err["message"], status=status, code=code if isinstance(code, str) else None,
                    payload=body)


def overflow_event(error: ApiError, wording: OverflowWording) -> dict[str, Any]:
    """The Responses SSE ``error`` event: LM Studio puts the whole body, JSON-encoded, in
    ``message``; OpenAI-style servers send code and message."""
    if wording in LMSTUDIO:
        return {"type": "error", "message": json.dumps({"error": {"message": error.message}})}
    return {"type": "error", "code": error.code, "message": error.message}


def failed_error(error: ApiError) -> dict[str, Any]:
    """The ``error`` object of a ``response.failed``."""
    return {"code": error.code or "server_error", "message": error.message}
