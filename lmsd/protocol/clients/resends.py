"""A client's resend of a request that will fail the same way is answered without the engine.

Claude Code 2.1.337 follows each streamed failure with an identical non-streamed request,
silently resends an unknown 400 (then again without its earlier thinking, which a chained
upstream request never carried), and tries to compact a conversation that overflowed with a
request larger still; Codex retries a compaction one item shorter each time. Every one of
those was a full prefill on a local engine that had just said no. So, per conversation
(session, agent, model) and for a short while (``ttl``), this remembers what the engine said:

- an overflow: the engine's own count N of a prompt of S characters against its limit M. A
  later prompt of at least S characters is over too (same N, a lower bound); a shorter one
  whose size scaled from N is still over M by more than ``SHRINK_MARGIN`` is over as well
  (N scaled); anything closer goes to the engine, which decides;
- a refusal of the content (an engine 4xx): the same request, byte for byte apart from
  ``VOLATILE`` fields, is refused the same way;
- the engine refusing lmsd's key or not knowing the model: the same request within
  ``BRIEF_TTL`` seconds (the CLI's immediate non-streamed resend), no longer: a user may
  fix either between two tries.

An entry is forgotten after ``ttl`` seconds, or when the limit lmsd knows for the model
changes (a reload). A busy, unreachable or crashed engine is never remembered: a retry may
well succeed. Times are passed in: no I/O here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..failures import ContextOverflow, Failure, NotFound, UpstreamAuth, UpstreamRejected

#: Fields of an upstream body that a client's resend changes without changing the prompt
#: (Claude Code's non-streamed retry: ``stream`` false and a larger output budget).
VOLATILE = frozenset({"stream", "stream_options", "max_tokens", "max_output_tokens",
                      "max_completion_tokens", "n_predict"})
#: A shorter prompt is answered from memory only when, scaled from the engine's count, it
#: is still this far over the limit (text removed may be denser than the rest).
SHRINK_MARGIN = 1.1
#: A refused key or a missing model may be fixed between two tries, but not in the
#: milliseconds between a streamed failure and the CLI's non-streamed resend of it.
BRIEF_TTL = 5.0
Key = tuple[str, ...]


def _canonical(body: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in body.items() if k not in VOLATILE},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def fingerprint(body: dict[str, Any]) -> str:
    """What identifies a request to the engine, whatever a resend changes around it."""
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


def prompt_size(full: dict[str, Any]) -> int:
    """The size of the whole prompt (the full, unchained body) in characters."""
    return len(_canonical(full))


@dataclass
class _Entry:
    at: float
    limit: int | None  # the limit lmsd knew for the model then (a change forgets the entry)
    failure: Failure
    fingerprint: str
    size: int
    ttl: float


@dataclass
class Resends:
    """Failures an engine gave, per conversation, consulted before sending (pure)."""

    ttl: float = 60.0
    max_entries: int = 256
    _entries: dict[Key, list[_Entry]] = field(default_factory=dict)

    def note(self, key: Key, body: dict[str, Any], full: dict[str, Any], failure: Failure,
             *, limit: int | None, now: float) -> bool:
        """Remember ``failure`` of ``body`` if a resend would meet it again; True if kept."""
        if isinstance(failure, ContextOverflow):
            if not failure.prompt_tokens or not failure.context_limit:
                return False  # without the engine's numbers, nothing to compare a resend to
        elif isinstance(failure, (NotFound, UpstreamAuth)):
            if failure.upstream is None:
                return False  # lmsd's own 404 (a path, a session), not the engine's word
        elif not isinstance(failure, UpstreamRejected):
            return False
        if len(self._entries) >= self.max_entries and key not in self._entries:
            self._entries.clear()  # bounded: one entry list per live conversation
        kept = [e for e in self._entries.get(key, []) if self._fresh(e, limit, now)]
        ttl = BRIEF_TTL if isinstance(failure, (NotFound, UpstreamAuth)) else self.ttl
        kept.append(_Entry(now, limit, failure, fingerprint(body), prompt_size(full),
                           min(ttl, self.ttl)))
        self._entries[key] = kept[-8:]
        return True

    def recall(self, key: Key, body: dict[str, Any], full: dict[str, Any], *,
               limit: int | None, now: float) -> Failure | None:
        """The failure ``body`` will meet, known from an earlier one; None: send it."""
        entries = [e for e in self._entries.get(key, []) if self._fresh(e, limit, now)]
        if not entries:
            self._entries.pop(key, None)
            return None
        self._entries[key] = entries
        print_ = fingerprint(body)
        size = prompt_size(full)
        for entry in reversed(entries):
            failure = entry.failure
            if isinstance(failure, ContextOverflow):
                if (known := _still_over(failure, entry.size, size)) is not None:
                    return known
            elif entry.fingerprint == print_:
                return failure
        return None

    def forget(self, key: Key) -> None:
        self._entries.pop(key, None)

    def _fresh(self, entry: _Entry, limit: int | None, now: float) -> bool:
        return now - entry.at <= entry.ttl and entry.limit == limit


def _still_over(failure: ContextOverflow, was: int, size: int) -> ContextOverflow | None:
    """The overflow a prompt of ``size`` characters meets, given the engine counted one of
    ``was`` characters; None when only the engine can tell."""
    n, m = failure.prompt_tokens, failure.context_limit
    if size >= was:
        tokens = n
    else:
        tokens = n * size // max(was, 1)
        if tokens <= m * SHRINK_MARGIN:
            return None
    return ContextOverflow(
        f"the engine counted {n} tokens (limit {m}) for this conversation's prompt moments "
        f"ago; this one is {'at least as large' if size >= was else f'~{tokens} tokens'}",
        prompt_tokens=tokens, context_limit=m, upstream=failure.upstream)
