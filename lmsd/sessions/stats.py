"""Per (session, agent, model) counters, as the admin API shows them and the store keeps
them (JSON in SQLite, so adding a field needs no schema migration)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

NO_TURN = {"prefilled_tokens": None, "cached_tokens": None, "prefill_ms": None, "at": None}


@dataclass
class SessionStats:
    """Per (session, agent, model) counters, for the admin API."""

    turns: int = 0
    chain_hits: int = 0
    misses: dict[str, int] = field(default_factory=dict)
    #: Turns to a stateless upstream (chat, messages): whole by design, not misses.
    unchained_turns: int = 0
    items_sent: int = 0
    items_full: int = 0
    tokens_sent: int = 0
    tokens_full: int = 0
    last_response_id: str | None = None
    created: float = 0.0
    last_used: float = 0.0
    fronts: list[str] = field(default_factory=list)  # the APIs its turns came in by
    repaired_tool_calls: int = 0  # tool calls printed as text that lmsd made real
    upstream: str | None = None  # the upstream its last turn went to
    upstream_moves: int = 0  # turns that went to another upstream than the one before
    #: Prompt tokens the engine computed, and those its prefix cache held, over the turns
    #: whose engine said so (``protocol/prefill.py``).
    prefilled_tokens: int = 0
    cached_tokens: int = 0
    #: The prompt tokens (prefilled + cached) of the turns whose engine said what it
    #: prefilled: the base of ``cached_percent``. (``cached_tokens`` also counts turns
    #: that said only what was cached, LM Studio's.)
    measured_prompt_tokens: int = 0
    #: The last turn's: what it prefilled, found cached, and how long the prefill took
    #: (None where the engine did not say), and when it ended.
    last_turn: dict[str, Any] = field(default_factory=lambda: dict(NO_TURN))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionStats:
        """Counters as stored (JSON, so adding a field needs no schema migration): a row
        written before a field existed gets its default; a field this version does not
        know (a newer lmsd's) is ignored."""
        known = {f.name for f in fields(cls)}
        stats = cls(**{k: v for k, v in data.items() if k in known})
        # An older lmsd counted a stateless upstream's turns as misses of this name.
        stats.unchained_turns += stats.misses.pop("stateless_upstream", 0)
        return stats

    @property
    def cached_percent(self) -> int | None:
        """The share of the prompt tokens the engine's prefix cache held, over the turns
        whose engine said what it prefilled (None: none did). On a stateless upstream
        this is what chaining is elsewhere: how little of each turn is computed again."""
        if not self.measured_prompt_tokens:
            return None
        cached = self.measured_prompt_tokens - self.prefilled_tokens
        return round(100 * max(cached, 0) / self.measured_prompt_tokens)
