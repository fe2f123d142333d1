"""Stop sequences, enforced by lmsd on streamed text.

The Responses API has no ``stop``, so lmsd cuts the text itself. Text that may be the
start of a stop sequence is held back until the next delta shows whether it is: the
client never sees a stop sequence, nor any text after one, however the upstream
chunked it. A chat front's ``stop`` can use the same scanner.
"""

from __future__ import annotations


class StopScanner:
    """Find the first stop sequence in text that arrives in pieces."""

    __slots__ = ("_prefixes", "holdback", "sequences")

    def __init__(self, sequences: tuple[str, ...]) -> None:
        self.sequences = sequences
        self.holdback = max((len(s) for s in sequences), default=1) - 1
        # Every proper prefix: what the end of a delta may hold of a sequence to come. A
        # set lookup per length beats asking each sequence (it runs on every delta).
        self._prefixes = frozenset(s[:n] for s in sequences for n in range(1, len(s)))

    def scan(self, text: str) -> tuple[str, str, str | None]:
        """(what can be sent, what to hold back, the stop sequence found or None).

        ``text`` is what was held back before plus the new delta. When a sequence is
        found, what precedes it is sent and nothing is held; the earliest wins (ties go
        to the smallest string, so the answer never depends on the settings' order).
        """
        hits = [(text.find(s), s) for s in self.sequences if s in text]
        if hits:
            at, seq = min(hits)
            return text[:at], "", seq
        keep = self._partial_suffix(text)
        if not keep:
            return text, "", None
        return text[:len(text) - keep], text[len(text) - keep:], None

    def _partial_suffix(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that begins some stop sequence."""
        prefixes = self._prefixes
        for size in range(min(self.holdback, len(text)), 0, -1):
            if text[-size:] in prefixes:
                return size
        return 0
