"""How much of a prompt the engine computed, and how much its prefix cache held.

A local agent loses its seconds to re-prefill, so each turn says what the engine
prefilled, as the engine reports it and never inferred from a figure that may be wrong:

- llama-server adds ``timings`` (``server_slot_stats::to_json``) to the last chunk of a
  chat stream (the usage chunk with ``include_usage``), to a whole chat completion, and
  to the data of its ``response.completed`` event: ``cache_n`` (held), ``prompt_n``
  (computed for this request), ``prompt_ms``, ``predicted_n``, ``predicted_ms``;
- its ``/v1/messages`` has no ``timings``, but its usage always carries
  ``cache_read_input_tokens``, with ``input_tokens`` the uncached rest;
- llama-cpp-python reports ``prompt_tokens`` only: nothing is known;
- LM Studio's ``/v1/responses`` reports ``input_tokens_details.cached_tokens``, which
  sometimes sticks at 0 (lms#553): only a positive count says anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..pivot import Usage
from ..tokens import text_tokens


@dataclass(frozen=True, slots=True)
class Timings:
    """llama.cpp's ``timings`` object, the fields lmsd reads (None: absent or not a count)."""

    prompt_n: int | None = None
    cache_n: int | None = None
    prompt_ms: float | None = None
    predicted_n: int | None = None


def read_timings(value: Any) -> Timings | None:
    """``timings`` as an engine sent it; None when it is not an object."""
    if not isinstance(value, dict):
        return None
    return Timings(_count(value.get("prompt_n")), _count(value.get("cache_n")),
                   _ms(value.get("prompt_ms")), _count(value.get("predicted_n")))


def prefill_fields(usage: Usage | None) -> dict[str, Any]:
    """What a turn's log line and its session say of the prefill: ``prefilled_tokens``,
    ``cached_tokens`` and ``prefill_ms``, each only when known. A cached count of 0 is
    known only beside a prefilled count (from the same engine report); alone it may be
    LM Studio's stuck 0, or a server that reports no cache at all."""
    if usage is None:
        return {}
    out: dict[str, Any] = {}
    if usage.prefilled_tokens is not None:
        out["prefilled_tokens"] = usage.prefilled_tokens
    if usage.cached_tokens > 0 or usage.prefilled_tokens is not None:
        out["cached_tokens"] = usage.cached_tokens
    if usage.prefill_ms is not None:
        out["prefill_ms"] = round(usage.prefill_ms, 1)
    return out


def expected_prefill(body: dict[str, Any]) -> int | None:
    """What a chained Responses request (``previous_response_id``) makes the engine
    prefill by design, in estimated tokens: its new items, and the instructions and tools
    resent with it (LM Studio restores neither from the stored response, and may count
    them as prefilled again each turn). None for a request that is not chained: there,
    what the engine could have cached is the whole prompt it saw last turn."""
    if not body.get("previous_response_id"):
        return None
    resent = [body.get("input") or [], body.get("instructions") or "",
              body.get("tools") or []]
    return sum(text_tokens(part if isinstance(part, str) else
                           json.dumps(part, ensure_ascii=False)) for part in resent)


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _ms(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None
