"""``lmsd tail``: the daemon's events as they happen, one line each, until Ctrl-C.

With ``--follow`` a daemon that stops or restarts is waited for and the stream resumed;
the events it replays on reconnecting are not printed twice.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Sequence
from functools import partial
from typing import Any, TextIO
from urllib.parse import urlencode

import httpx
import trio
import trio_websocket

from ..bus import RECENT
from ..protocol.text import escape_controls, json_safe, needs_quotes, quoted
from .client import TIMEOUT, Admin, ClientError, local_tls, local_url
from .text import CYAN, DIM, GREEN, MAGENTA, RED, RESET, YELLOW, use_color

RECONNECT_MIN, RECONNECT_MAX = 0.2, 5.0  # ``--follow``: seconds between attempts
TYPE_COLORS = {"request": CYAN, "model": MAGENTA, "upstream": MAGENTA, "chain": GREEN}
LEVEL_COLORS = {"error": RED, "critical": RED, "warning": YELLOW}



def _value(v: Any) -> str:
    """A field for the terminal: quoted when needed, control characters escaped (``\x1b``),
    since a client chose some of these values (a session's model, its id)."""
    if isinstance(v, str):
        return quoted(v) if needs_quotes(v) else v
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".")
    return json_safe(json.dumps(v, ensure_ascii=False, default=str, separators=(",", ":")))


def event_color(event: dict[str, Any]) -> str:
    kind = str(event.get("type", ""))
    if kind == "dropped":
        return YELLOW
    return (LEVEL_COLORS.get(str(event.get("level")))
            or TYPE_COLORS.get(kind.partition(".")[0], ""))


def format_event(event: dict[str, Any], *, color: bool = False) -> str:
    """``HH:MM:SS type key=value ...``; a level above info is shown as ``level=...``."""
    ts = event.get("ts")
    stamp = time.strftime("%H:%M:%S", time.localtime(ts if isinstance(ts, int | float)
                                                     else None))
    kind = escape_controls(str(event.get("type", "?")))
    fields = {k: v for k, v in event.items() if k not in ("ts", "type", "level")
              and v is not None}
    level = str(event.get("level", "info"))
    if level not in ("info", "debug"):
        fields = {"level": level, **fields}
    rest = " ".join(f"{escape_controls(str(k))}={_value(v)}" for k, v in fields.items())
    if color:
        paint = event_color(event)
        stamp = f"{DIM}{stamp}{RESET}"
        kind = f"{paint}{kind}{RESET}" if paint else kind
    return f"{stamp} {kind} {rest}".rstrip()


def events_url(admin: Admin, session: str | None, types: Sequence[str],
               replay: int = 0) -> str:
    query = {}
    if session:
        query["session"] = session
    if types:
        query["type"] = ",".join(types)
    if replay:
        query["replay"] = str(replay)
    url = local_url(admin.listen, "wss" if admin.tls_cert else "ws") + "/events"
    return f"{url}?{urlencode(query)}" if query else url


class _Gone(Exception):
    """The daemon is not there (stopped, restarting, not started yet)."""


class _Printer:
    """Prints events; skips the ones a replay after a reconnect repeats."""

    def __init__(self, as_json: bool, color: bool, out: TextIO) -> None:
        self.as_json, self.color, self.out = as_json, color, out
        self.recent: deque[str] = deque(maxlen=RECENT)
        self.outage = False  # the daemon went away; say so when it is back

    def show(self, event: dict[str, Any]) -> None:
        key = json.dumps(event, ensure_ascii=False, sort_keys=True)
        if key in self.recent:
            return
        self.recent.append(key)
        line = (json_safe(json.dumps(event, ensure_ascii=False)) if self.as_json
                else format_event(event, color=self.color))
        print(line, file=self.out, flush=True)


async def _tail_once(admin: Admin, url: str, printer: _Printer) -> None:
    """Print the event stream at ``url`` until it ends; raise _Gone when the daemon goes."""
    headers = [(b"Authorization", f"Bearer {admin.token}".encode())] if admin.token else []
    try:
        async with trio_websocket.open_websocket_url(
                url, extra_headers=headers, connect_timeout=TIMEOUT,
                ssl_context=local_tls(admin.tls_cert) if admin.tls_cert else None) as ws:
            while True:
                message = await ws.get_message()
                try:
                    event = json.loads(message)
                except ValueError:
                    continue
                if not isinstance(event, dict):
                    continue
                if event.get("type") == "subscribed":
                    if printer.outage:  # after a reconnect: say so, terminal or not
                        print(f"lmsd: reconnected to {admin.url}", file=sys.stderr,
                              flush=True)
                        printer.outage = False
                    elif sys.stderr.isatty():
                        print(f"lmsd: tailing {url} (Ctrl-C to stop)", file=sys.stderr)
                    continue
                printer.show(event)
    except trio_websocket.ConnectionRejected as exc:
        if exc.status_code in (401, 403):
            raise admin.refused() from None
        raise ClientError(f"the admin API refused the event stream "
                          f"(HTTP {exc.status_code})") from None
    except trio_websocket.ConnectionTimeout:
        raise _Gone(f"the daemon at {admin.url} did not answer within {TIMEOUT:g}s") from None
    except trio_websocket.HandshakeError:
        raise _Gone(str(admin.not_running())) from None
    except trio_websocket.ConnectionClosed as exc:
        reason = exc.reason
        if reason is None or reason.code in (1001, 1006):  # going away, or just gone
            raise _Gone("the event stream ended: the daemon stopped") from None
        why = f"{reason.name}: {reason.reason}" if reason.reason else reason.name
        raise ClientError(f"the daemon closed the event stream ({why})") from None


async def _tail(admin: Admin, session: str | None, types: Sequence[str], replay: int,
                printer: _Printer, follow: bool) -> None:
    """Tail; with ``follow``, wait for the daemon and reconnect whenever it goes away."""
    url = events_url(admin, session, types, replay)
    while True:
        try:
            await _tail_once(admin, url, printer)
        except _Gone as exc:
            if not follow:
                raise ClientError(str(exc)) from None
            if not printer.outage:  # once per outage
                printer.outage = True
                print(f"lmsd: {exc}; reconnecting (Ctrl-C to stop)", file=sys.stderr,
                      flush=True)
        await _wait_for(admin)
        # A restarted daemon's history is all new to us; the printer drops repeats.
        url = events_url(admin, session, types, RECENT)


async def _wait_for(admin: Admin) -> None:
    """Poll ``/healthz``, backing off, until the daemon answers."""
    delay = RECONNECT_MIN
    async with httpx.AsyncClient(base_url=admin.url, headers=admin.headers(),
                                 timeout=TIMEOUT, trust_env=False,
                                 verify=admin.verify()) as http:
        while True:
            await trio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)
            try:
                await http.get("/healthz")
                return
            except httpx.HTTPError:
                pass


def tail(admin: Admin, *, session: str | None = None, types: Sequence[str] = (),
         as_json: bool = False, replay: int = 0, follow: bool = False,
         out: TextIO | None = None) -> None:
    """``lmsd tail``: print events until Ctrl-C (which returns normally)."""
    stream = out if out is not None else sys.stdout
    if not follow:
        admin.request("GET", "/healthz")  # a clear error if it is not running or refuses us
    printer = _Printer(as_json, use_color(stream), stream)
    try:
        trio.run(partial(_tail, admin, session, types, replay, printer, follow))
    except KeyboardInterrupt:
        pass
    except BaseExceptionGroup as group:
        _, rest = group.split(KeyboardInterrupt)
        if rest is not None:
            raise
