"""Did a slot restore save the prefill? Judged by the engine's own counters on the turn
after it. llama-server restores a file in milliseconds and reports its tokens, but on
sliding-window and hybrid models (and some dense ones: llama.cpp #25913, #27813, #28194,
#26676) the next prompt is recomputed anyway ("forcing full prompt re-processing"): the
restore was cosmetic. Once a model shows it, lmsd replays a conversation's last request
instead (a real prefill, but one that works). Pure bookkeeping: the keeper tells it what
was restored and what the next turn reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Restores smaller than this are not judged: a few hundred tokens say nothing either way.
MIN_RESTORED = 256


@dataclass
class Verdict:
    """What the restores of one model did."""

    checked: int = 0
    effective: int = 0
    ineffective: int = 0
    replays_ineffective: int = 0  # warm-ups the next turn did not find in the cache
    #: The last ineffective restore: tokens restored, then reused and prefilled.
    last: dict[str, int] | None = None

    @property
    def replay(self) -> bool:
        """Restore no more: the last judged restore saved nothing."""
        return self.ineffective > 0 and self.last is not None


def judge(restored: int, prefilled: int | None, cached: int) -> bool | None:
    """True: the turn after a restore of ``restored`` tokens reused most of them; False:
    it prefilled most of them again (cached less than half, prefilled at least half);
    None: nothing to judge (a small restore, the engine does not say what it prefilled,
    or a prompt shorter than the file: not its continuation, e.g. after a compaction)."""
    if restored < MIN_RESTORED or prefilled is None or prefilled + cached < restored:
        return None
    half = restored / 2
    return cached >= half or prefilled < half


@dataclass(frozen=True)
class Ineffective:
    """A restore (or replay) the next turn did not find in the engine's cache."""

    model: str
    how: str  # "restore" or "replay"
    tokens: int  # what it put in the engine
    cached: int  # what the next turn reused
    prefilled: int  # what the next turn computed
    switched: bool  # the first for this model: its warm-ups are replays from now on

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "how": self.how, "restored_tokens": self.tokens,
                "cached_tokens": self.cached, "prefilled_tokens": self.prefilled,
                "switched_to_replay": self.switched}


class Restores:
    """Restores waiting for their next turn, and per model what they did."""

    def __init__(self) -> None:
        #: conversation -> (model, "restore" or "replay", tokens it put in the engine)
        self._pending: dict[str, tuple[str, str, int]] = {}
        self.models: dict[str, Verdict] = {}

    def restored(self, conversation: str, model: str, tokens: int | None,
                 how: str = "restore") -> None:
        """``conversation``'s file (``tokens`` long) was restored for ``model``, or
        (``how="replay"``) its last request replayed: its next turn says whether that
        saved the prefill."""
        if tokens:
            self._pending[conversation] = (model, how, tokens)
        else:
            self._pending.pop(conversation, None)

    def replaced(self, conversation: str) -> None:
        """What was restored for ``conversation`` is gone before its turn (a replay ran
        over it, the engine restarted): not judged."""
        self._pending.pop(conversation, None)

    def clear(self) -> None:
        """The engine lost everything: nothing restored is left to judge."""
        self._pending.clear()

    def turn(self, conversation: str, prefilled: int | None, cached: int
             ) -> Ineffective | None:
        """After ``conversation``'s turn (or a replay over its restored file): what was
        ineffective, if this turn shows it, else None."""
        pending = self._pending.pop(conversation, None)
        if pending is None:
            return None
        model, how, tokens = pending
        ok = judge(tokens, prefilled, cached)
        if ok is None:
            return None
        verdict = self.models.setdefault(model, Verdict())
        if how == "replay":
            if ok:
                return None
            verdict.replays_ineffective += 1
            return Ineffective(model, how, tokens, cached, prefilled or 0, False)
        verdict.checked += 1
        if ok:
            verdict.effective += 1
            return None
        switched = not verdict.replay
        verdict.ineffective += 1
        verdict.last = {"restored_tokens": tokens, "cached_tokens": cached,
                        "prefilled_tokens": prefilled or 0}
        return Ineffective(model, how, tokens, cached, prefilled or 0, switched)

    def replay_instead(self, model: str | None) -> bool:
        """Replay ``model``'s conversations instead of restoring their files."""
        verdict = self.models.get(model or "")
        return verdict is not None and verdict.replay

    def to_json(self) -> dict[str, Any] | None:
        """For ``/upstreams``' cache block: per model, what restores did."""
        if not self.models:
            return None
        return {model: {"checked": v.checked, "effective": v.effective,
                        "ineffective": v.ineffective,
                        "replays_ineffective": v.replays_ineffective,
                        "warm_up": "replay" if v.replay else "restore", "last": v.last}
                for model, v in self.models.items()}

    def summary(self) -> str | None:
        """One line for the dashboard and ``lmsd doctor``."""
        bad = [m for m, v in self.models.items() if v.replay]
        if not bad:
            return None
        return (f"slot restore saved no prefill on {', '.join(sorted(bad))}: "
                "warmed by a replay instead")
