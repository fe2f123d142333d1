"""``lmsd status``: the daemon's ``GET /status`` for people (or as JSON)."""

from __future__ import annotations

import json
from typing import Any, TextIO

from .client import Admin
from .text import duration, plural


def format_status(data: dict[str, Any]) -> str:
    """``GET /status`` for people."""
    lines = [f"lmsd {data.get('version', '?')} (pid {data.get('pid', '?')}), "
             f"up {duration(data.get('uptime_s', 0))}"]

    def row(label: str, text: str) -> None:
        lines.append(f"{label:<9} {text}")

    if data.get("draining"):
        row("draining", "yes: the daemon is shutting down")
    up = data.get("upstream", {})
    several = data.get("upstreams") or []
    several = several if len(several) > 1 else []
    if several:  # "upstream" is the first one only: the headline speaks for them all
        row("upstream", upstreams_headline(several))
    else:
        reachable = {True: "reachable", False: "NOT reachable"}.get(up.get("reachable"),
                                                                   "not checked yet")
        if (data.get("upstreams") or [{}])[0].get("parked"):  # a started model, stopped
            reachable = f"{STOPPED}: a request starts it"
        row("upstream", f"{up.get('url')} (found by: {up.get('source')}), {reachable}")
        chaining = "chaining on" if up.get("chaining") else "chaining off"
        row("dialect", f"{up.get('api') or 'not decided yet'} ({up.get('api_why') or '?'}), "
            f"{chaining}")
        if up.get("refused"):
            row("", f"REFUSED: {up['refused']}")
    for i, u in enumerate(several):
        health = u.get("health", {})
        state = STOPPED if u.get("parked") else "in rotation" if u.get("in_rotation") \
            else f"OUT ({health.get('last_error') or health.get('state')})"
        if u.get("refused"):
            state += f", REFUSED: {u['refused']}"
        row("upstreams" if i == 0 else "",
            f"{u.get('name')}: {u.get('url')} {u.get('api') or '?'}, {state}, "
            f"{u.get('in_flight', 0)} in flight, "
            f"{plural(u.get('active_sessions', 0), 'active session')}")
    conditions = {u.get("name"): upstream_condition(u)[0] for u in several}
    models = data.get("models", [])
    if not models:
        row("models", "none loaded")
    for i, m in enumerate(models):
        name = m.get("key", "?")
        if m.get("instance_id") and m["instance_id"] != name:
            name += f" as {m['instance_id']}"
        where = ""
        if m.get("upstream"):  # only with several upstreams
            name += f" on {m['upstream']}"
            condition = conditions.get(m["upstream"], "serving")
            where = f" (as last seen: {m['upstream']} {condition})" \
                if condition != "serving" else ""
        ctx = m.get("context_length") or "?"
        most = m.get("max_context_length") or "?"
        row("models" if i == 0 else "", f"{name}  context {ctx} / {most}  "
            f"{m.get('state', '?')}{where}")
    w = data.get("watcher", {})
    mode = "enforcing" if w.get("enforcing") else "not enforcing"
    text = (f"{mode} min_context {w.get('min_context')}; reloading: "
            f"{', '.join(w.get('reloading') or []) or 'none'}; backing off: "
            f"{', '.join(w.get('backing_off') or []) or 'none'}")
    if w.get("last_error"):
        whose = f" ({several[0].get('name')})" if several else ""  # the first one's watcher
        text += f"; last error{whose}: {w['last_error']}"
    row("watcher", text)
    r = data.get("requests", {})
    row("requests", f"{r.get('requests', 0)} served, {plural(r.get('errors', 0), 'error')}, "
        f"{r.get('in_flight', 0)} in flight, "
        f"{plural(r.get('active_streams', 0), 'open stream')}")
    s = data.get("store", {})
    where = f"persistent at {s.get('path')}" if s.get("persistent") else "in memory only"
    row("store", f"{plural(s.get('nodes', 0), 'chain node')} in "
        f"{plural(s.get('sessions', 0), 'chain')}, {where}")
    return "\n".join(lines)


#: A model lmsd starts itself whose engine is stopped (or starting): not down.
STOPPED = "stopped (on demand)"
#: An upstream's condition, as the headline counts them (in this order).
CONDITIONS = ("serving", STOPPED, "not checked yet", "refused", "not reachable",
              "out of rotation")


def upstream_condition(u: dict[str, Any]) -> tuple[str, str | None]:
    """(one of CONDITIONS, why) for one ``/upstreams`` entry."""
    health = u.get("health") or {}
    if u.get("parked"):  # its engine is stopped on purpose: what it last said is moot
        return STOPPED, None
    if u.get("refused"):
        return "refused", str(u["refused"])
    if u.get("reachable") is False:
        return "not reachable", health.get("last_error")
    if not u.get("in_rotation", True):
        return "out of rotation", health.get("last_error") or health.get("state")
    if u.get("reachable") is None:
        return "not checked yet", None
    return "serving", None


def upstreams_headline(upstreams: list[dict[str, Any]]) -> str:
    """``2 upstreams: 1 serving, 1 not reachable (b: connection refused)``: every
    upstream counted, each one that does not serve named with its reason."""
    by_condition: dict[str, list[str]] = {}
    for u in upstreams:
        condition, why = upstream_condition(u)
        by_condition.setdefault(condition, []).append(
            f"{u.get('name', '?')}: {why}" if why else str(u.get("name", "?")))
    parts = []
    for condition in CONDITIONS:
        names = by_condition.get(condition)
        if names:
            label = "stopped on demand" if condition == STOPPED else condition
            parts.append(f"{len(names)} {label}" if condition == "serving" else
                         f"{len(names)} {label} ({'; '.join(names)})")
    return f"{len(upstreams)} upstreams: {', '.join(parts)}"


def status(admin: Admin, *, as_json: bool = False, out: TextIO | None = None) -> None:
    """``lmsd status``."""
    data = admin.request("GET", "/status")
    print(json.dumps(data, indent=2) if as_json else format_status(data), file=out)
