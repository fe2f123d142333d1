"""What engines say when a prompt does not fit or a stored response is gone, word for word.

Pure data for ``failures.py``'s classifier: each pattern comes from a real server (LM
Studio, llama-server, llama-cpp-python, vLLM, SGLang, OpenAI, Anthropic-native engines),
and the emulator in ``tests/`` speaks them all. A new engine's wording is one entry here.
"""

from __future__ import annotations

import re

_I = re.IGNORECASE | re.DOTALL
#: (pattern, group of the prompt size N, group of the limit M), most specific first.
OVERFLOW_WORDINGS: tuple[tuple[re.Pattern[str], int, int], ...] = (
    # LM Studio (llama.cpp engine): "Trying to keep the first 15857 tokens when context the
    # overflows. However, the model is loaded with context length of only 4096 tokens ..."
    (re.compile(r"keep the first (\d+) tokens.*?context length of only (\d+)", _I), 1, 2),
    # LM Studio / llama.cpp: "Cannot truncate prompt with n_keep (24101) >= n_ctx (24000)";
    # LM Studio 0.4.25: "The number of tokens to keep from the initial prompt is greater
    # than the context length (n_keep: 24101 >= n_ctx: 24000). Try to load ..."
    (re.compile(r"n_keep\W{0,3}(\d+)\W{0,3}>=?\s*n_ctx\W{0,3}(\d+)", _I), 1, 2),
    # llama-server (exceed_context_size_error): "request (4476 tokens) exceeds the
    # available context size (4096 tokens), try increasing it"
    (re.compile(r"(\d+) tokens?\)? exceeds? the available context size \((\d+)", _I), 1, 2),
    # llama-cpp-python: "Requested tokens (5000) exceed context window of 4096"
    (re.compile(r"requested tokens \((\d+)\) exceeds? context window of (\d+)", _I), 1, 2),
    # SGLang: "The input (5000 tokens) is longer than the model's context length (4096
    # tokens)."
    (re.compile(r"input \((\d+) tokens\) is longer than the model's context length "
                r"\((\d+)", _I), 1, 2),
    # vLLM: "This model's maximum context length is 4096 tokens. However, your request has
    # 5000 input tokens." OpenAI: "... However, you requested 5000 tokens (...)" or "your
    # messages resulted in 5000 tokens". (vLLM's wording that names output tokens is a
    # budget, below: its "requested N" is the output, not the prompt.)
    (re.compile(r"maximum context length is (\d+) tokens.*?(?:resulted in|requested|request "
                r"has) (\d+)\b(?! output)", _I), 2, 1),
    # vLLM's engine check: "The decoder prompt (length 5000) is longer than the maximum
    # model length of 4096. Make sure that `max_model_len` is no smaller than ..."
    (re.compile(r"prompt \(length (\d+)\) is longer than the maximum model length of "
                r"(\d+)", _I), 1, 2),
    # Anthropic-native engines: "prompt is too long: 5000 tokens > 4096 maximum"
    (re.compile(r"prompt is too long: (\d+) tokens? > (\d+)", _I), 1, 2),
)
# When the prompt and the output budget (max_tokens) together do not fit, compacting the
# prompt is what makes room, so the limit is what is left for it: M - max_tokens. Each
# pattern names the prompt N, the window M and the output budget.
BUDGET_WORDINGS: tuple[re.Pattern[str], ...] = (
    # vLLM: "'max_tokens' or 'max_completion_tokens' is too large: 8000. This model's maximum
    # context length is 4096 tokens and your request has 2778 input tokens (8000 > 4096 -
    # 2778)"
    re.compile(r"too large: (?P<output>\d+)\. This model's maximum context length is "
               r"(?P<window>\d+) tokens and your request has (?P<prompt>\d+) input tokens", _I),
    # vLLM 0.25 (renderers/params.py): "This model's maximum context length is 8192 tokens.
    # However, you requested 64 output tokens and your prompt contains (at least) 10000
    # input tokens, for a total of (at least) 10064 tokens."
    re.compile(r"maximum context length is (?P<window>\d+) tokens\. However, you requested "
               r"(?P<output>\d+) output tokens and your prompt contains (?:at least )?"
               r"(?P<prompt>\d+) input tokens", _I),
    # SGLang (and vLLM behind some gateways): "Requested token count exceeds the model's
    # maximum context length of 262144 tokens. You requested a total of 267042 tokens:
    # 201506 tokens from the input messages and 65536 tokens for the completion."
    re.compile(r"maximum context length of (?P<window>\d+) tokens.*?(?P<prompt>\d+) tokens "
               r"from the input messages and (?P<output>\d+) tokens for the completion", _I),
    # Anthropic: "input length and `max_tokens` exceed context limit: 188240 + 21333 >
    # 200000, decrease input length or `max_tokens` and try again"
    re.compile(r"input length and `?max_tokens`? exceed context limit: (?P<prompt>\d+) \+ "
               r"(?P<output>\d+) > (?P<window>\d+)", _I),
)
OVERFLOW_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error",
                             "context_window_exceeded", "prompt_too_long"})
OVERFLOW_HINTS = ("context length", "context size", "context window", "context_length",
                   "n_ctx", "prompt is too long", "input length")
OVERFLOW_VERBS = ("exceed", "overflow", "too long", "not enough", "greater than",
                   "longer than", "too large")

STALE_CODES = frozenset({"previous_response_not_found", "response_not_found"})
# "Previous response with id 'resp_1' not found." (LM Studio and OpenAI);
# "Prediction history node with id '...' not found while attempting to build chat history
# chain" (LM Studio before 0.3.32, lmstudio-bug-tracker #1188).
STALE_WORDINGS = re.compile(
    r"previous[ _]response\w*\b.{0,80}?\bnot found|response with id \S+ not found|"
    r"history node with id .{0,80}?not found", _I)
# llama-server's stateless /v1/responses: "... does not support 'previous_response_id'"
UNSUPPORTED_WORDINGS = re.compile(
    r"(?:not|n't|un)\s*support\w*.{0,40}previous_response_id|"
    r"previous_response_id.{0,40}(?:not|un)\s*supported", _I)
