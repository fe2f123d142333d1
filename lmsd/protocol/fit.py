"""Does a prompt fit the loaded context? Decided before sending, so that a doomed request
costs no prefill and the client hears "prompt is too long" (and compacts) at once.

Two sources of truth, used only when they are certain:
- an exact count from the engine's tokenizer (of the content alone, so a lower bound of
  the templated prompt): over the limit means over;
- lmsd's estimate (characters / 3.5), trusted only past a safe margin: real tokenizers
  land between 2.5 and 5 characters a token on agent traffic (dense JSON to indented
  code), so an estimate over 1.5 x the limit is over for any of them.

The limit comes from the engine's listing (LM Studio reports each instance's loaded
context) or, for servers that list none, from the last overflow the engine reported
(:class:`LearnedLimits`): Claude Code's compaction retries after an overflow then stop
costing a prefill each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .failures import ContextOverflow

ESTIMATE_MARGIN = 1.5  # an estimate this far over the limit is over for any tokenizer
EXACT_FROM = 0.75  # ask the engine's tokenizer only for prompts this close to the limit


def wants_exact_count(estimate: int, limit: int | None) -> bool:
    """Is the prompt close enough to the limit that an exact count could change the answer?"""
    return bool(limit) and estimate >= limit * EXACT_FROM  # type: ignore[operator]


def check_fit(estimate: int, limit: int | None, exact: int | None = None
              ) -> ContextOverflow | None:
    """The overflow (``prompt is too long`` to Claude Code) of a prompt that certainly
    does not fit, else None."""
    if not limit:
        return None
    if exact is not None:
        return _overflow(exact, limit) if exact > limit else None
    if estimate > limit * ESTIMATE_MARGIN:
        return _overflow(estimate, limit)
    return None


def _overflow(tokens: int, limit: int) -> ContextOverflow:
    return ContextOverflow(f"the prompt ({tokens} tokens) does not fit the loaded context "
                           f"({limit} tokens)", prompt_tokens=tokens, context_limit=limit)


@dataclass
class LearnedLimits:
    """Context limits that engines stated in their overflow errors, per (upstream, model).

    They expire (``ttl`` seconds): a user who reloads the model with a larger context must
    not be refused on an old number. Times are passed in, so this stays pure.
    """

    ttl: float = 120.0
    _limits: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)

    def learn(self, upstream: str, model: str, limit: int, now: float) -> None:
        if limit > 0:
            if len(self._limits) >= 256:  # bounded: one entry per model actually served
                self._limits.clear()
            self._limits[(upstream, model)] = (limit, now)

    def get(self, upstream: str, model: str, now: float) -> int | None:
        entry = self._limits.get((upstream, model))
        if entry is None or now - entry[1] > self.ttl:
            return None
        return entry[0]
