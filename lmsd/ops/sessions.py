"""``lmsd sessions``, ``lmsd reset`` and ``lmsd record``: the daemon's sessions as a
table, forgetting them, recording their exchanges."""

from __future__ import annotations

import json
import time
from typing import Any, TextIO
from urllib.parse import quote

from ..sessions.config import ID_RULE, is_session_id
from .client import Admin, ClientError
from .text import ago, plural, ratio, table

ACTIVE_WINDOW = 3600  # seconds: ``lmsd sessions --active`` shows sessions used this recently

SESSION_HEADER = ("SESSION", "FRONT", "AGENT", "MODEL", "TURNS", "HITS", "MISSES", "CACHED",
                  "ITEMS SENT/FULL", "TOKENS SENT/FULL", "REPAIRED", "LAST PREFILLED/CACHED",
                  "LAST USED")


def format_sessions(sessions: list[dict[str, Any]], now: float | None = None) -> str:
    """``GET /sessions`` as a table, one row per agent and model."""
    if not sessions:
        return "no sessions"
    now = time.time() if now is None else now
    rows = []
    for entry in sessions:
        agents = entry.get("agents") or []
        if not agents:
            rows.append((entry["session"], "-", "-", "-", "0", "0", "-", "-", "-", "-", "0",
                         "-", ago(entry.get("last_used"), now)))
        for a in agents:
            misses = ",".join(f"{k}:{v}" for k, v in (a.get("misses") or {}).items()) or "-"
            fronts = ",".join(a.get("fronts") or ()) or "-"  # none before lmsd recorded it
            cached = a.get("cached_percent")
            rows.append((entry["session"], fronts, a.get("agent", "?"), a.get("model", "?"),
                         str(a.get("turns", 0)), chain_hits(a), misses,
                         "-" if cached is None else f"{cached}%",
                         ratio(a.get("items_sent", 0), a.get("items_full", 0)),
                         ratio(a.get("tokens_sent", 0), a.get("tokens_full", 0)),
                         str(a.get("repaired_tool_calls", 0)),  # tool calls printed as text
                         last_prefill(a.get("last_turn")), ago(a.get("last_used"), now)))
    return table(SESSION_HEADER, rows)


def chain_hits(agent: dict[str, Any]) -> str:
    """The HITS cell: chain hits; ``unchained`` when every turn went to a stateless
    upstream (chat, messages: nothing to chain, CACHED says what its cache held), and
    ``N (+M unchained)`` for a mix (a failover between kinds of upstream)."""
    hits, unchained = agent.get("chain_hits", 0), agent.get("unchained_turns", 0)
    if not unchained:
        return str(hits)
    if unchained >= agent.get("turns", 0) and not hits:
        return "unchained"
    return f"{hits} (+{unchained} unchained)"


def last_prefill(turn: Any) -> str:
    """The last turn's ``prefilled/cached`` tokens, ``-`` for what the engine did not say."""
    if not isinstance(turn, dict):
        return "-"
    counts = [turn.get("prefilled_tokens"), turn.get("cached_tokens")]
    if counts == [None, None]:
        return "-"
    return "/".join("-" if c is None else str(c) for c in counts)


def select_sessions(entries: list[dict[str, Any]], *, limit: int | None = None,
                    active: bool = False, now: float | None = None) -> list[dict[str, Any]]:
    """The most recently used first; ``active``: used within ACTIVE_WINDOW seconds."""
    now = time.time() if now is None else now
    chosen = sorted(entries, key=lambda e: e.get("last_used") or 0, reverse=True)
    if active:
        chosen = [e for e in chosen if (e.get("last_used") or 0) >= now - ACTIVE_WINDOW]
    return chosen if limit is None else chosen[:limit]


def sessions(admin: Admin, *, as_json: bool = False, limit: int | None = None,
             active: bool = False, out: TextIO | None = None) -> None:
    """``lmsd sessions [--limit N] [--active]``."""
    data = admin.request("GET", "/sessions")
    data["sessions"] = select_sessions(data.get("sessions", []), limit=limit, active=active)
    text = json.dumps(data, indent=2) if as_json else format_sessions(data["sessions"])
    print(text, file=out)


def session_path(session: str, hint: str = "") -> str:
    """``/sessions/<id>``, checked here first: ``.`` or ``..`` would reach the daemon as
    ``/sessions/`` once the HTTP client removed the dot segment (``lmsd reset .`` reset
    every session)."""
    if not is_session_id(session):
        raise ClientError(f"session id: {ID_RULE} (got {session[:40]!r}){hint}")
    return f"/sessions/{quote(session, safe='')}"


def reset(admin: Admin, session: str | None = None, *, out: TextIO | None = None) -> None:
    """``lmsd reset SESSION | --all``: forget one session's chains and counters, or all."""
    path = "/sessions" if session is None else \
        session_path(session, "; `lmsd reset --all` resets every session")
    data = admin.request("DELETE", path)
    what = "all sessions" if session is None else f"session {session}"
    print(f"reset {what}: {plural(int(data.get('chain_nodes', 0)), 'chain node')} dropped",
          file=out)


def record(admin: Admin, session: str, *, stop: bool = False,
           out: TextIO | None = None) -> None:
    """``lmsd record SESSION [--stop]``: start or stop recording a session's exchanges."""
    data = admin.request("DELETE" if stop else "PUT", f"{session_path(session)}/record")
    if stop:
        print(f"session {session}: recording stopped", file=out)
    else:
        print(f"session {session}: recording to {data.get('directory')}/ (replay a file "
              f"with `lmsd replay FILE`)", file=out)
