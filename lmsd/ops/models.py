"""``lmsd models``: what each upstream can serve, where, loaded or not, its memory and
idle time (the admin API's ``GET /models``, one view: upstreams/models/view.py)."""

from __future__ import annotations

import json
from typing import Any, TextIO

from ..protocol.text import escape_controls
from .client import Admin
from .text import duration, size, table

HEADER = ("NAME", "UPSTREAM", "STATE", "MEMORY", "CONTEXT", "IDLE", "IN FLIGHT", "NOTES")


def notes(row: dict[str, Any]) -> str:
    """What sets a model apart: pinned, its group, its idle ttl, lmsd's own engine."""
    marks = []
    if row.get("pinned"):
        marks.append("pinned")
    if row.get("group"):
        marks.append(f"group {escape_controls(str(row['group']))}")
    if row.get("ttl_s") and not row.get("pinned"):
        marks.append(f"ttl {duration(row['ttl_s'])}")
    if row.get("started"):
        marks.append(f"started (pid {row.get('pid') or '?'})")
    elif row.get("by_lmsd"):
        marks.append("loaded by lmsd")
    return ", ".join(marks) or "-"


def format_models(data: dict[str, Any]) -> str:
    """``GET /models`` as a table, then each upstream's memory budget. Model names come
    from the engines: their control characters are shown escaped, never sent to the
    terminal."""
    rows = [(escape_controls(str(r.get("name", "?"))), str(r.get("upstream", "?")),
             str(r.get("state", "?")),
             size(r.get("memory_bytes")),
             "-" if r.get("context_length") is None else str(r["context_length"]),
             "-" if r.get("idle_s") is None else duration(r["idle_s"]),
             str(r.get("in_flight", 0)), notes(r))
            for r in data.get("models") or []]
    lines = [table(HEADER, rows)] if rows else ["no models: no upstream lists any"]
    for b in data.get("budgets") or []:
        used = size(b.get("used_bytes")) if b.get("used_bytes") else "0 B"
        lines.append(f"budget {b.get('upstream', '?')}: {used} of "
                     f"{size(b.get('budget_bytes'))}")
    return "\n".join(lines)


def models(admin: Admin, *, as_json: bool = False, out: TextIO | None = None) -> None:
    """``lmsd models [--json]``."""
    data = admin.request("GET", "/models")
    print(json.dumps(data, indent=2) if as_json else format_models(data), file=out)
