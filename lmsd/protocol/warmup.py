"""A warm-up: a conversation's last full request sent again for its prefill only (one
output token, not streamed, not stored), so the engine holds the prefix again before the
user's next turn. Pure: a body in, the body to send out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

#: Fields that would make the replay more than a prefill, per endpoint.
_DROP = ("stream", "stream_options", "previous_response_id")


def warmup_body(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` (the full history last sent to ``path``) as a one-token prefill."""
    out = {k: v for k, v in body.items() if k not in _DROP}
    if path.endswith("/responses"):
        # OpenAI's Responses API refuses fewer than 16 (a few ms of decode)
        out.update(max_output_tokens=16, store=False)
        out.pop("max_tokens", None)
    else:
        out["max_tokens"] = 1
    out["stream"] = False
    return out


def shared_start(a: dict[str, Any], b: dict[str, Any]) -> int:
    """How many characters two request bodies' starts share: the system prompt (or
    instructions) and the tools, as a template renders them first. Two Claude Code
    sessions share thousands (the same prompt and tools, another environment block)."""
    return common_prefix(_start(a), _start(b))


def common_prefix(a: Sequence[Any], b: Sequence[Any]) -> int:
    """How many leading items (characters, token ids) ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _start(body: dict[str, Any]) -> str:
    messages = body.get("messages") or body.get("input") or []
    head = messages[0] if messages and isinstance(messages, list) else None
    system = body.get("system") or body.get("instructions") or head
    return json.dumps([body.get("tools"), system], ensure_ascii=False)
