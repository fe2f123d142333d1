"""How the ops commands print: durations and relative times, tables, and color (only on a
terminal, never with ``NO_COLOR``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TextIO

RESET, DIM = "\x1b[0m", "\x1b[2m"
RED, GREEN, YELLOW, MAGENTA, CYAN = "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[35m", "\x1b[36m"


def duration(seconds: float) -> str:
    """``45s``, ``3m 12s``, ``2h 5m``, ``4d 1h``."""
    s = int(max(seconds, 0))
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60),
                                      ("m", 60, "s", 1)):
        if s >= size:
            rest = (s % size) // sub_size
            return f"{s // size}{unit} {rest}{sub}" if rest else f"{s // size}{unit}"
    return f"{s}s"


def ago(timestamp: float | None, now: float) -> str:
    """``12s ago``, ``3m ago``, ``2h ago``, ``4d ago``; ``-`` for never."""
    if not timestamp:
        return "-"
    delta = now - timestamp
    if delta < 1:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{int(delta // size)}{unit} ago"
    return f"{int(delta)}s ago"


def ratio(sent: int, full: int) -> str:
    """``3/12 (25%)``: what was sent against what a full resend would have been."""
    if not full:
        return f"{sent}/{full}"
    return f"{sent}/{full} ({round(100 * sent / full)}%)"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    return "\n".join(lines)


def use_color(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Color only on a terminal, and never with ``NO_COLOR`` set (https://no-color.org)."""
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def size(n: float | None) -> str:
    """``17.0 GiB``, ``512.0 MiB``; ``-`` for unknown (``None`` or 0)."""
    if not n:
        return "-"
    for unit, scale in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"
