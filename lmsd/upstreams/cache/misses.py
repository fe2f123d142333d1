"""Cache misses, seen and explained: a turn that prefilled most of its prompt again is a
``cache.miss`` event saying what lmsd knows of the cause (its slot went to another
conversation, the engine restarted, the model was reloaded). First turns are cold by
nature, not misses. Pure bookkeeping; the keeper tells it what happened."""

from __future__ import annotations

from ...log import event
from ...protocol.pivot import Usage
from .slots import BACKGROUND

#: A turn that prefilled more than this many tokens, and most of its prompt, missed.
MISS_TOKENS = 1024
UNKNOWN = ("unknown to lmsd: evicted by the engine (another client, its cache size), or "
           "the prompt changed early on")


class Misses:
    def __init__(self, upstream: str, limit: int = 10_000) -> None:
        self.upstream = upstream
        self.limit = limit  # conversations remembered (forgetting hides only a cause)
        self.count = 0
        self._seen: set[str] = set()  # conversations that had a turn here
        self._why: dict[str, str] = {}  # what last cost a conversation its cache

    def cost(self, conversation: str, why: str) -> None:
        """``conversation`` lost what the engine held of it, because ``why``."""
        self._why[conversation] = why

    def everyone(self, why: str) -> None:
        """The engine lost everything (a restart, a reload)."""
        for conversation in self._seen:
            self._why[conversation] = why

    def turn(self, conversation: str, usage: Usage | None, expected: int | None = None
             ) -> None:
        """After a turn: report it if it missed. ``expected``: the tokens a chained turn
        prefills by design (``prefill.expected_prefill``), None for a full-history one."""
        why = self._why.pop(conversation, None)
        seen = conversation in self._seen
        if len(self._seen) >= self.limit:
            self._seen.clear()
            self._why.clear()
        self._seen.add(conversation)
        if usage is None or usage.prefilled_tokens is None or not seen or \
                conversation == BACKGROUND:
            return
        prefilled, cached = usage.prefilled_tokens, usage.cached_tokens
        if prefilled < MISS_TOKENS or prefilled <= cached:
            return
        if expected is not None and prefilled - expected < MISS_TOKENS:
            return  # a chained turn: what it resent, prefilled again as designed
        self.count += 1
        event("cache.miss", level=30, upstream=self.upstream, conversation=conversation,
              prefilled_tokens=prefilled, cached_tokens=cached, expected_tokens=expected,
              why=why or UNKNOWN)
