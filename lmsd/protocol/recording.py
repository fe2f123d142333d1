"""The recorded exchange (format ``lmsd.exchange``, version 1) and the comparison of two
client-visible streams, without I/O: what ``lmsd record`` writes and ``lmsd replay`` reads.

One file is one client request and everything lmsd did for it::

    {"format": "lmsd.exchange", "version": 1, "recorded_at": <unix seconds>,
     "front": "anthropic" | "openai_chat" | "openai_responses", "session", "agent",
     "dialect": the upstream kind spoken ("responses", "chat", "messages"),
     "server": the dialect's class (LlamaServerDialect speaks "chat" with extras),
     "client": {"method", "path", "headers": {allowed names only}, "body": JSON or text},
     "upstream": [{"method", "path", "body", "status", "headers", "chunks": [[t, text]]}],
     "client_stream": {"status", "headers", "chunks": [[t, text], ...]},
     "timings": {"first_upstream_byte", "first_client_byte", "total"}}

``t`` is seconds since the client request arrived. Secrets never reach the file: headers
are kept only when their name is on an allow-list (no Authorization, x-api-key, cookie or
anything key-, token- or secret-like), and a body's key-like fields are masked.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

FORMAT = "lmsd.exchange"
VERSION = 1

#: Request and response headers that help to reproduce a turn and carry no secret.
ALLOWED_HEADERS = frozenset({
    "content-type", "accept", "user-agent", "anthropic-version", "anthropic-beta",
    "x-claude-code-session-id", "session_id", "x-lmsd-session", "x-lmsd-agent",
    "originator", "version", "openai-beta", "x-stainless-lang", "x-stainless-package-version",
    "x-request-id", "cache-control", "transfer-encoding", "content-length"})
_SECRET_NAME = re.compile(r"auth|key|token|secret|cookie|password|credential", re.I)
MASK = "<redacted>"


def allowed_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The headers worth keeping, by lower-case name: allow-listed and not secret-like."""
    kept: dict[str, str] = {}
    for name, value in headers:
        low = name.lower()
        if low in ALLOWED_HEADERS and not _SECRET_NAME.search(low):
            kept[low] = value
    return kept


def redact(value: Any) -> Any:
    """``value`` with every key-like field's value masked (a key pasted into a body, an
    ``api_key`` option); the conversation's text is kept as it is."""
    if isinstance(value, dict):
        return {k: MASK if isinstance(k, str) and _SECRET_NAME.search(k)
                and k not in _KEEP_FIELDS and isinstance(v, str) else redact(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


#: Fields whose names look key-like but hold counts or protocol data, not secrets.
_KEEP_FIELDS = frozenset({"max_tokens", "max_output_tokens", "input_tokens", "output_tokens",
                          "max_completion_tokens", "cache_key", "prompt_cache_key",
                          "budget_tokens", "total_tokens", "cached_tokens"})


def as_body(raw: bytes) -> Any:
    """A body as JSON when it is JSON, else as text (what a file can hold)."""
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def new_exchange(*, recorded_at: float, method: str, path: str,
                 headers: Iterable[tuple[str, str]], body: bytes) -> dict[str, Any]:
    """An exchange holding only its client request so far (redacted)."""
    return {"format": FORMAT, "version": VERSION, "recorded_at": round(recorded_at, 3),
            "front": None, "session": None, "agent": None, "dialect": None, "server": None,
            "client": {"method": method, "path": path, "headers": allowed_headers(headers),
                       "body": redact(as_body(body))},
            "upstream": [], "client_stream": {"status": None, "headers": {}, "chunks": []},
            "timings": {}}


def check(exchange: Any) -> dict[str, Any]:
    """``exchange`` if it is one this version reads; ValueError saying why not."""
    if not isinstance(exchange, dict) or exchange.get("format") != FORMAT:
        raise ValueError(f"not an {FORMAT} file")
    if exchange.get("version") != VERSION:
        raise ValueError(f"{FORMAT} version {exchange.get('version')!r} is not supported "
                         f"(this lmsd reads version {VERSION})")
    return exchange


def joined(chunks: Iterable[list[Any]]) -> str:
    return "".join(text for _, text in chunks)


# --- comparison ------------------------------------------------------------------------

#: Values that differ on every run: ids lmsd or the upstream makes up, and clocks.
_VOLATILE_KEYS = frozenset({"created_at", "created", "completed_at", "timestamp",
                            "system_fingerprint", "request_id"})
_IDS = (
    re.compile(r"\bmsg_[A-Za-z0-9_-]+"), re.compile(r"\bresp_[A-Za-z0-9_-]+"),
    re.compile(r"\bchatcmpl-[A-Za-z0-9_-]+"), re.compile(r"\breq_[A-Za-z0-9_-]+"),
    re.compile(r"\bcall_lmsd_[0-9a-f]+_"), re.compile(r"\b(?:fc|rs|item)_[A-Za-z0-9_-]+"),
    re.compile(r"\btoolu_[A-Za-z0-9_-]+"),
)


class _Ids:
    """Numbers every distinct id in the order it first appears: two runs that make up
    different ids in the same places compare equal, a changed place does not."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def sub(self, text: str) -> str:
        for pattern in _IDS:
            text = pattern.sub(self._name, text)
        return text

    def _name(self, match: re.Match[str]) -> str:
        found = match.group(0)
        if found not in self.seen:
            self.seen[found] = f"<id{len(self.seen) + 1}>"
        return self.seen[found]


def _normal(value: Any, ids: _Ids) -> Any:
    if isinstance(value, dict):
        return {k: "<volatile>" if k in _VOLATILE_KEYS else _normal(v, ids)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v, ids) for v in value]
    if isinstance(value, str):
        return ids.sub(value)
    return value


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


def normalized_lines(status: Any, body: str) -> list[str]:
    """The client-visible result as lines that compare across runs: the status, then one
    line per SSE event (pings and comments dropped: their timing is the engine's) or the
    whole JSON body, ids numbered in order of appearance and clocks masked."""
    ids = _Ids()
    lines = [f"status {status}"]
    events = _sse_events(body) if body.lstrip().startswith(("event:", "data:", ":")) else None
    if events is None:
        try:
            lines.append(json.dumps(_normal(json.loads(body), ids), sort_keys=True))
        except ValueError:
            lines.append(ids.sub(body))
        return lines
    for name, data in events:
        if name == "ping":
            continue
        try:
            shown = json.dumps(_normal(json.loads(data), ids), sort_keys=True)
        except ValueError:
            shown = ids.sub(data)
        if shown.startswith('{"type": "ping"'):
            continue
        lines.append(f"{name or 'data'}: {shown}")
    return lines


def diff_streams(recorded: Mapping[str, Any], replayed: Mapping[str, Any]) -> list[str]:
    """A unified diff of two ``client_stream``s after normalizing; empty when the same."""
    before = normalized_lines(recorded.get("status"), joined(recorded.get("chunks", [])))
    after = normalized_lines(replayed.get("status"), joined(replayed.get("chunks", [])))
    if before == after:
        return []
    return list(difflib.unified_diff(before, after, "recorded", "replayed", lineterm=""))
