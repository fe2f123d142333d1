"""Two client-visible streams compared, without I/O: what ``lmsd replay`` reports.

Each stream becomes lines that compare across runs (``normalized_lines``): the status, then
one line per SSE event or the whole JSON body, the ids lmsd and the upstream make up
numbered in order of appearance and clocks masked; against a live upstream its tool call
ids and token counts too. ``diff_streams`` is the unified diff of two such lists.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from typing import Any

from .recording import joined

#: Values that differ on every run: ids lmsd or the upstream makes up, and clocks.
_VOLATILE_KEYS = frozenset({"created_at", "created", "completed_at", "timestamp",
                            "system_fingerprint", "request_id"})
_IDS = (
    re.compile(r"\bmsg_[A-Za-z0-9_-]+"), re.compile(r"\bresp_[A-Za-z0-9_-]+"),
    re.compile(r"\bchatcmpl-[A-Za-z0-9_-]+"), re.compile(r"\breq_[A-Za-z0-9_-]+"),
    re.compile(r"\bcall_lmsd_[0-9a-f]+_"), re.compile(r"\b(?:fc|rs|item)_[A-Za-z0-9_-]+"),
    re.compile(r"\btoolu_[A-Za-z0-9_-]+"),
)
#: Against a live upstream (``live``), the tool call ids it mints (``call_123``, ``toolu_``,
#: llama-server's 32 bare letters and digits: any shape) are found by where they sit: these
#: keys, and ``id`` in an object of one of ``_CALL_TYPES``.
_CALL_ID_KEYS = frozenset({"call_id", "tool_call_id", "tool_use_id"})
_CALL_TYPES = frozenset({"tool_use", "server_tool_use", "function", "function_call",
                         "custom_tool_call"})
#: Against a live upstream, token counts are the engine's (its cache, an unchained
#: request's longer history): every number under ``usage``, and these keys anywhere.
_USAGE_KEYS = frozenset({"input_tokens", "output_tokens", "total_tokens", "prompt_tokens",
                         "completion_tokens", "cached_tokens", "reasoning_tokens",
                         "cache_creation_input_tokens", "cache_read_input_tokens"})


class _Ids:
    """Numbers every distinct id in the order it first appears: two runs that make up
    different ids in the same places compare equal, a changed place does not."""

    def __init__(self, *, live: bool = False) -> None:
        self.seen: dict[str, str] = {}
        self.live = live

    def sub(self, text: str) -> str:
        for pattern in _IDS:
            text = pattern.sub(self._name, text)
        return text

    def name(self, found: str) -> str:
        if found not in self.seen:
            self.seen[found] = f"<id{len(self.seen) + 1}>"
        return self.seen[found]

    def _name(self, match: re.Match[str]) -> str:
        return self.name(match.group(0))


def _normal(value: Any, ids: _Ids, usage: bool = False) -> Any:
    """``value`` with ids numbered and clocks masked; ``ids.live``: also the upstream's
    tool call ids numbered and its token counts masked (``usage``: inside a ``usage``)."""
    if isinstance(value, dict):
        call = ids.live and value.get("type") in _CALL_TYPES
        return {k: _normal_field(k, v, ids, usage, call) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v, ids, usage) for v in value]
    if isinstance(value, str):
        return ids.sub(value)
    if usage and isinstance(value, (int, float)) and not isinstance(value, bool):
        return "<count>"
    return value


def _normal_field(key: str, value: Any, ids: _Ids, usage: bool, call: bool) -> Any:
    if key in _VOLATILE_KEYS:
        return "<volatile>"
    if ids.live and isinstance(value, str) and (key in _CALL_ID_KEYS
                                                 or (call and key == "id")):
        return ids.name(value)
    usage = usage or (ids.live and key == "usage")
    if ids.live and key in _USAGE_KEYS:
        usage = True
    return _normal(value, ids, usage)


def _sse_events(text: str) -> list[tuple[str | None, str]] | None:
    """(event name, data) of each SSE event in ``text``; None if it is not SSE."""
    events: list[tuple[str | None, str]] = []
    for block in re.split(r"\r?\n\r?\n", text):
        if not block.strip():
            continue
        name, data, comment_only = None, [], True
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            comment_only = False
            field, _, rest = line.partition(":")
            rest = rest[1:] if rest.startswith(" ") else rest
            if field == "event":
                name = rest
            elif field == "data":
                data.append(rest)
            else:
                return None
        if not comment_only:
            events.append((name, "\n".join(data)))
    return events


def normalized_lines(status: Any, body: str, *, live: bool = False) -> list[str]:
    """The client-visible result as lines that compare across runs: the status, then one
    line per SSE event (pings and comments dropped: their timing is the engine's) or the
    whole JSON body, ids numbered in order of appearance and clocks masked. ``live`` (a
    replay against a live upstream, not the recording): the upstream's tool call ids are
    numbered too and token counts masked; names, arguments and text still count."""
    ids = _Ids(live=live)
    lines = [f"status {status}"]
    events = _sse_events(body) if body.lstrip().startswith(("event:", "data:", ":")) else None
    if events is None:
        return [*lines, _shown_json(body, ids)]
    for name, data in events:
        if name == "ping":
            continue
        shown = _shown_json(data, ids)
        if shown.startswith('{"type": "ping"'):
            continue
        lines.append(f"{name or 'data'}: {shown}")
    return lines


def _shown_json(text: str, ids: _Ids) -> str:
    """``text`` normalized as JSON when it is JSON the parsers can hold, else as text."""
    try:
        return json.dumps(_normal(json.loads(text), ids), sort_keys=True)
    except (ValueError, RecursionError):
        return ids.sub(text)


def diff_streams(recorded: Mapping[str, Any], replayed: Mapping[str, Any], *,
                 live: bool = False) -> list[str]:
    """A unified diff of two ``client_stream``s after normalizing; empty when the same.
    ``live``: ``replayed`` came from a live upstream (``normalized_lines``); the recorded
    replay keeps call ids and usage strict (the recording answers the same every time)."""
    before = normalized_lines(recorded.get("status"), joined(recorded.get("chunks", [])),
                              live=live)
    after = normalized_lines(replayed.get("status"), joined(replayed.get("chunks", [])),
                             live=live)
    if before == after:
        return []
    return list(difflib.unified_diff(before, after, "recorded", "replayed", lineterm=""))
