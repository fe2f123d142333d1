"""A circuit breaker per upstream: take a failing engine out of rotation, probe it back.

Pure (the clock is passed in), so every transition is tested by feeding times.

- closed: requests flow. ``failures`` consecutive failures open it; one that leaves no
  doubt (the connection refused: nothing listens) opens it at once.
- open: no requests for ``cooldown`` seconds (doubling per failed probe, up to
  ``max_cooldown``); the watcher's active checks keep looking meanwhile.
- half-open: after the cooldown one request goes through as a probe; its success (or a
  successful active check) closes the breaker, its failure opens it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass
class Breaker:
    failures: int = 3
    cooldown: float = 10.0
    max_cooldown: float = 120.0
    state: str = CLOSED
    consecutive: int = 0
    opened_at: float = 0.0
    wait: float = 0.0  # the current cooldown
    probing: bool = False  # a half-open probe is in flight
    last_error: str | None = None
    trips: int = 0  # how often it opened (for /upstreams)

    def available(self, now: float) -> bool:
        """May a request be sent now? (Does not claim the probe: see ``claim``.)"""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            return now - self.opened_at >= self.wait
        return not self.probing

    def claim(self, now: float) -> bool:
        """Take a request slot: closed always; after the cooldown, the one probe."""
        if not self.available(now):
            return False
        if self.state != CLOSED:
            self.state, self.probing = HALF_OPEN, True
        return True

    def success(self) -> str | None:
        """A request (or an active check) succeeded; returns ``"closed"`` if that
        brought the upstream back."""
        was = self.state
        self.state, self.consecutive, self.probing, self.wait = CLOSED, 0, False, 0.0
        self.last_error = None
        return CLOSED if was != CLOSED else None

    def failure(self, now: float, error: str, *, certain: bool = False) -> str | None:
        """A request failed in a way that says the upstream is unwell; returns ``"open"``
        when that took it out of rotation."""
        self.last_error = error
        self.consecutive += 1
        if self.state == HALF_OPEN:
            self.probing = False
            return self._open(now, min(max(self.wait * 2, self.cooldown), self.max_cooldown))
        if self.state == OPEN:
            self.opened_at = now  # an active check failed again: the wait starts over
            return None
        if certain or self.consecutive >= self.failures:
            return self._open(now, self.cooldown)
        return None

    def release(self) -> None:
        """A request ended; if it was the probe and told nothing (the client left, the
        prompt was too long), another request may probe."""
        self.probing = False

    def _open(self, now: float, wait: float) -> str:
        self.state, self.opened_at, self.wait = OPEN, now, wait
        self.trips += 1
        return OPEN

    def to_json(self, now: float) -> dict[str, Any]:
        data: dict[str, Any] = {"state": self.state, "consecutive_failures": self.consecutive,
                                "trips": self.trips, "last_error": self.last_error}
        if self.state == OPEN:
            data["probe_in_s"] = round(max(0.0, self.wait - (now - self.opened_at)), 1)
        return data
