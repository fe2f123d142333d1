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
                          "openai", "vllm"]
OverflowMode = Literal["http400", "http500", "stream_error", "response_failed"]
WORDINGS: tuple[OverflowWording, ...] = ("lmstudio", "lmstudio_n_keep", "lmstudio_0425",
                                         "llama_server", "openai", "vllm")
MODES: tuple[OverflowMode, ...] = ("http400", "http500", "stream_error", "response_failed")
LMSTUDIO = ("lmstudio", "lmstudio_n_keep", "lmstudio_0425")


def overflow_message(wording: OverflowWording, n: int, m: int) -> str:
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
    return (f"This model's maximum context length is {m} tokens. However, your request has "
            f"{n} input tokens. Please reduce the length of the input messages.")


def overflow_body(wording: OverflowWording, n: int, m: int, status: int) -> dict[str, Any]:
    """The HTTP error body (also the chat stream's error chunk) as that server sends it."""
    message = overflow_message(wording, n, m)
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
    return {"object": "error", "message": message, "type": "BadRequestError", "param": None,
            "code": status}


def overflow_error(wording: OverflowWording, n: int, m: int, status: int) -> ApiError:
    body = overflow_body(wording, n, m, status)
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
