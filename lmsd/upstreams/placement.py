"""Which upstream a conversation goes to: pinned where its KV cache is, moved only when
it must. Pure (the clock is passed in); the router feeds it candidates.

A load balancer sees requests; lmsd sees conversations. Each (session, agent) is pinned
to the upstream that served it, and stays while that upstream is available and not past
its load threshold (``max_concurrent``, ``spill_in_flight``). A new conversation goes to
the least-loaded candidate, where load counts requests in flight *and* the conversations
recently active there (each holds cache, and will come back), divided by ``weight``, so
conversations spread even when they arrive one after another and never overlap. After a
restart, the upstream that holds a conversation's stored chain wins over the least
loaded: its prefix is most likely still in that engine's cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PinKey = tuple[str, str]  # (session, agent)


@dataclass(frozen=True)
class Candidate:
    """An upstream that can serve the request, as placement sees it."""

    name: str
    weight: float = 1.0
    in_flight: int = 0
    max_concurrent: int = 0  # 0: no limit
    available: bool = True  # healthy (its breaker lets a request through)


@dataclass(frozen=True)
class Choice:
    upstream: str
    why: str  # pinned, least_loaded, holds_chain, background, moved: <reason>, failover
    moved_from: str | None = None


@dataclass
class _Pin:
    upstream: str
    last_active: float


class Placement:
    def __init__(self, *, spill_in_flight: int = 0, active_window: float = 900.0,
                 max_pins: int = 20_000, round_robin: bool = False) -> None:
        #: The baseline a plain load balancer gives (``routing = "round_robin"``): every
        #: request to the next upstream in turn, no pins. For measuring what affinity saves.
        self.round_robin = round_robin
        self._turn = 0
        self.spill_in_flight = spill_in_flight
        self.active_window = active_window
        self.max_pins = max_pins
        self._pins: OrderedDict[PinKey, _Pin] = OrderedDict()  # least recently active first

    # -- what it knows ----------------------------------------------------------------------

    def pinned(self, key: PinKey) -> str | None:
        pin = self._pins.get(key)
        return pin.upstream if pin else None

    def active(self, now: float) -> dict[str, list[PinKey]]:
        """The conversations active within the window, by upstream."""
        cutoff = now - self.active_window
        by_upstream: dict[str, list[PinKey]] = {}
        for key in reversed(self._pins):  # most recent first: stop at the first stale one
            pin = self._pins[key]
            if pin.last_active < cutoff:
                break
            by_upstream.setdefault(pin.upstream, []).append(key)
        return by_upstream

    def load(self, candidate: Candidate, active: dict[str, list[PinKey]]) -> float:
        return (candidate.in_flight + len(active.get(candidate.name, ()))) / candidate.weight

    def overloaded(self, candidate: Candidate) -> bool:
        limits = [n for n in (candidate.max_concurrent, self.spill_in_flight) if n]
        return any(candidate.in_flight >= n for n in limits)

    # -- the decision -----------------------------------------------------------------------

    def choose(self, key: PinKey, candidates: Sequence[Candidate], now: float, *,
               holder: str | None = None, prefer: str | None = None,
               exclude: Iterable[str] = ()) -> Choice | None:
        """Where ``key``'s request goes, pinning it there; None when nothing is available.

        ``holder`` is the upstream holding the conversation's stored chain (used when it
        is not pinned yet); ``prefer`` a route that wins while available (``background``);
        ``exclude`` the upstreams this request already failed on.
        """
        skip = set(exclude)
        eligible = [c for c in candidates if c.available and c.name not in skip]
        if not eligible:
            return None
        by_name = {c.name: c for c in eligible}
        if self.round_robin:
            self._turn += 1
            return Choice(eligible[self._turn % len(eligible)].name, "round_robin")
        pin = self._pins.get(key)
        current = pin.upstream if pin else None
        choice: Choice | None = None
        if prefer in by_name and not self.overloaded(by_name[prefer]):
            choice = Choice(prefer, "background")
        elif current in by_name and not self.overloaded(by_name[current]):
            choice = Choice(current, "pinned")
        elif current is None and holder in by_name and not self.overloaded(by_name[holder]):
            choice = Choice(holder, "holds_chain")
        if choice is None:
            active = self.active(now)
            if pin is not None:  # this conversation's own cache does not count against it
                active = {n: [k for k in keys if k != key] for n, keys in active.items()}
            relaxed = [c for c in eligible if not self.overloaded(c)] or eligible
            best = min(relaxed, key=lambda c: self.load(c, active))  # first on a tie
            why = "least_loaded"
            if current is not None and current != best.name:
                why = f"moved: {self._why_moved(current, candidates, skip)}"
            choice = Choice(best.name, why)
        if current is not None and current != choice.upstream and choice.why != "background":
            choice = Choice(choice.upstream, choice.why, moved_from=current)
        if choice.why != "background":  # a side request must not move the conversation
            self.touch(key, choice.upstream, now)
        return choice

    def touch(self, key: PinKey, upstream: str, now: float) -> None:
        self._pins[key] = _Pin(upstream, now)
        self._pins.move_to_end(key)
        while len(self._pins) > self.max_pins:
            self._pins.popitem(last=False)

    def forget(self, session: str | None = None) -> int:
        """Drop the pins of ``session`` (every pin when None): ``lmsd reset``."""
        keys = [k for k in self._pins if session is None or k[0] == session]
        for k in keys:
            del self._pins[k]
        return len(keys)

    def _why_moved(self, current: str, candidates: Sequence[Candidate], skip: set[str]
                   ) -> str:
        known = {c.name: c for c in candidates}
        if current in skip:
            return f"{current} failed"
        if current not in known:
            return f"{current} does not serve the model"
        if not known[current].available:
            return f"{current} is out of rotation"
        return f"{current} is overloaded"
