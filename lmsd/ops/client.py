"""The command-line client of the admin API: ``status``, ``sessions``, ``reset`` and
``env`` (``tail`` is in :mod:`lmsd.tail`).

Each command reads the admin address and token the way ``lmsd serve`` does (flags, then
``LMSD_*``, then the config file). A failure is one line on stderr, never a traceback:
commands raise :class:`ClientError` and the CLI prints it and exits 1.
"""

from __future__ import annotations

import json
import os
import shlex
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import quote, urlsplit

import httpx

from ..config import Settings, strip_api_suffix
from ..protocol.compaction import SIMPLE_PROMPT, claude_code_env
from ..sessions.config import ID_RULE, is_session_id

TIMEOUT = 10.0
ACTIVE_WINDOW = 3600  # seconds: ``lmsd sessions --active`` shows sessions used this recently
ANY_HOST = {"", "0.0.0.0", "::"}

RESET, DIM = "\x1b[0m", "\x1b[2m"
RED, GREEN, YELLOW, MAGENTA, CYAN = "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[35m", "\x1b[36m"


class ClientError(Exception):
    """A command failed; the message is the one line the user sees."""


def local_url(host_port: str, scheme: str = "http") -> str:
    """A URL for reaching ``host:port`` from this machine (a wildcard host is loopback)."""
    host, _, port = host_port.rpartition(":")
    host = host.strip("[]")
    if host in ANY_HOST:
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def local_tls(cert: str) -> ssl.SSLContext:
    """Trust exactly ``cert`` (a self-signed one, or any certificate of its chain)."""
    context = ssl.create_default_context(cafile=cert)
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


@dataclass
class Admin:
    """Where the admin API is and how to authenticate to it."""

    listen: str
    token: str = ""
    tls_cert: str = ""  # lmsd speaks https with this certificate

    @classmethod
    def from_settings(cls, settings: Settings) -> Admin:
        return cls(settings.admin_listen, settings.admin_token, settings.tls_cert)

    @property
    def url(self) -> str:
        return local_url(self.listen, "https" if self.tls_cert else "http")

    def verify(self) -> ssl.SSLContext | bool:
        """This machine's lmsd by its own certificate (pinned: the host name is not
        checked, the address is the one lmsd binds)."""
        return local_tls(self.tls_cert) if self.tls_cert else True

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def not_running(self) -> ClientError:
        return ClientError(f"the daemon is not running (nothing answers at {self.url}); "
                           f"start it with: lmsd serve")

    def refused(self) -> ClientError:
        if self.token:
            return ClientError("the admin API refused the token (check LMSD_ADMIN_TOKEN)")
        return ClientError("the admin API refused the token (set LMSD_ADMIN_TOKEN)")

    def request(self, method: str, path: str) -> Any:
        """Call the admin API; return the decoded JSON or raise ClientError."""
        try:
            with httpx.Client(base_url=self.url, headers=self.headers(), timeout=TIMEOUT,
                              verify=self.verify()) as client:
                response = client.request(method, path)
        except httpx.ConnectError:
            raise self.not_running() from None
        except httpx.TimeoutException:
            raise ClientError(f"the daemon at {self.url} did not answer within "
                              f"{TIMEOUT:g}s") from None
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot talk to the admin API at {self.url}: "
                              f"{exc or type(exc).__name__}") from None
        if response.status_code == 401:
            raise self.refused()
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            message = data.get("error", {}).get("message") if isinstance(data, dict) else None
            raise ClientError(f"{message or 'the admin API failed'} "
                              f"(HTTP {response.status_code} from {self.url}{path})")
        if data is None:
            raise ClientError(f"{self.url}{path} did not answer JSON; is that lmsd?")
        return data


# -- formatting helpers ---------------------------------------------------------------------


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


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# -- status ---------------------------------------------------------------------------------


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
        row("upstream", f"{up.get('url')} (found by: {up.get('source')}), {reachable}")
        chaining = "chaining on" if up.get("chaining") else "chaining off"
        row("dialect", f"{up.get('api') or 'not decided yet'} ({up.get('api_why') or '?'}), "
            f"{chaining}")
        if up.get("refused"):
            row("", f"REFUSED: {up['refused']}")
    for i, u in enumerate(several):
        health = u.get("health", {})
        state = "in rotation" if u.get("in_rotation") else \
            f"OUT ({health.get('last_error') or health.get('state')})"
        if u.get("refused"):
            state += f", REFUSED: {u['refused']}"
        row("upstreams" if i == 0 else "",
            f"{u.get('name')}: {u.get('url')} {u.get('api') or '?'}, {state}, "
            f"{u.get('in_flight', 0)} in flight, "
            f"{_plural(u.get('active_sessions', 0), 'active session')}")
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
    row("requests", f"{r.get('requests', 0)} served, {_plural(r.get('errors', 0), 'error')}, "
        f"{r.get('in_flight', 0)} in flight, "
        f"{_plural(r.get('active_streams', 0), 'open stream')}")
    s = data.get("store", {})
    where = f"persistent at {s.get('path')}" if s.get("persistent") else "in memory only"
    row("store", f"{_plural(s.get('nodes', 0), 'chain node')} in "
        f"{_plural(s.get('sessions', 0), 'chain')}, {where}")
    return "\n".join(lines)


#: An upstream's condition, as the headline counts them (in this order).
CONDITIONS = ("serving", "not checked yet", "refused", "not reachable", "out of rotation")


def upstream_condition(u: dict[str, Any]) -> tuple[str, str | None]:
    """(one of CONDITIONS, why) for one ``/upstreams`` entry."""
    health = u.get("health") or {}
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
            parts.append(f"{len(names)} {condition}" if condition == "serving" else
                         f"{len(names)} {condition} ({'; '.join(names)})")
    return f"{len(upstreams)} upstreams: {', '.join(parts)}"


def status(admin: Admin, *, as_json: bool = False, out: TextIO | None = None) -> None:
    """``lmsd status``."""
    data = admin.request("GET", "/status")
    print(json.dumps(data, indent=2) if as_json else format_status(data), file=out)


# -- sessions and reset ---------------------------------------------------------------------

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
    print(f"reset {what}: {_plural(int(data.get('chain_nodes', 0)), 'chain node')} dropped",
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


# -- env ------------------------------------------------------------------------------------


@dataclass
class LiveContext:
    """The context Claude Code must fit in, and where that number came from."""

    tokens: int
    source: str  # one line for the comment above the exports
    assumed: bool = False  # not the daemon's live view: min_context
    model: str | None = None  # the loaded model with that context


def live_context(admin: Admin, settings: Settings) -> LiveContext:
    """The smallest context among the running daemon's loaded models.

    Without a daemon (or a loaded model) it falls back to ``min_context``, which the
    watcher raises loaded models to.
    """
    try:
        data = admin.request("GET", "/status")
    except ClientError as exc:
        why = str(exc).split(";")[0]
        return LiveContext(settings.min_context, f"{why}: assuming min_context "
                           f"{settings.min_context}; run lmsd env again once it runs",
                           assumed=True)
    loaded = [(m["context_length"], m.get("key", "?")) for m in data.get("models") or ()
              if isinstance(m, dict) and isinstance(m.get("context_length"), int)
              and m["context_length"] > 0]
    if not loaded:
        return LiveContext(settings.min_context, f"no model is loaded: assuming "
                           f"min_context {settings.min_context}", assumed=True)
    tokens, key = min(loaded)
    return LiveContext(tokens, f"{key} is loaded with {tokens} tokens of context",
                       model=key if key != "?" else None)


def unserved_model(settings: Settings, model: str) -> str | None:
    """Why ``model`` would fail if Claude Code asked the running lmsd for it (its own
    words, naming what is served), or None when it is served or lmsd cannot be asked."""
    base = proxy_url(settings)
    try:
        with httpx.Client(base_url=base, timeout=TIMEOUT, verify=local_tls(
                settings.tls_cert) if settings.tls_cert else True) as proxy:
            found = proxy.get(f"/v1/models/{quote(model, safe='')}")
            if found.status_code != 404:
                return None
            listed = proxy.get("/v1/models", params={"limit": 1000}).json().get("data", [])
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    names = [m["id"] for m in listed if isinstance(m, dict) and isinstance(m.get("id"), str)
             and not m["id"].startswith("claude-")]
    return (f"no upstream of the lmsd at {base} serves the model {model!r}; it serves: "
            f"{', '.join(names) or 'no model (load one)'}")


#: Where a client machine keeps its client key: Claude Code's settings refer to it, and
#: Codex reads it (its provider's ``env_key``).
KEY_ENV = "LMSD_API_KEY"
URL_ENV = "LMSD_URL"


@dataclass(frozen=True)
class Target:
    """The lmsd a client is pointed at: its proxy URL, and the client key to send."""

    url: str
    key: str = ""
    key_in_env: bool = False  # the key is the shell's $LMSD_API_KEY already: refer to it


def proxy_url(settings: Settings) -> str:
    """This machine's own proxy: https when lmsd speaks TLS."""
    return local_url(settings.listen, "https" if settings.tls_cert else "http")


def target(settings: Settings, url: str | None = None, key_name: str | None = None,
           environ: Mapping[str, str] | None = None) -> Target:
    """Where ``lmsd env`` points a client: ``url`` (else ``$LMSD_URL``, else this machine's
    proxy), with the key named ``key_name`` in this machine's client_keys (printed once,
    as ``export LMSD_API_KEY=...``), else the shell's ``$LMSD_API_KEY``."""
    environ = os.environ if environ is None else environ
    url = url or environ.get(URL_ENV) or proxy_url(settings)
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClientError(f"--url: expected http(s)://HOST:PORT, got {url!r}")
    url = strip_api_suffix(url.strip())
    if key_name is not None:
        if key_name not in settings.client_keys:
            known = ", ".join(sorted(settings.client_keys)) or "none"
            raise ClientError(f"--key-name: no client key named {key_name!r} in client_keys "
                              f"(known: {known})")
        return Target(url, settings.client_keys[key_name])
    if environ.get(KEY_ENV):
        return Target(url, environ[KEY_ENV], key_in_env=True)
    return Target(url)


def env_vars(settings: Settings, context: int | None = None,
             model: str | None = None, to: Target | None = None, *,
             claude_names: bool = False) -> dict[str, str]:
    """The environment that points Claude Code at this lmsd (or ``to``) and makes it
    compact in time for ``context`` tokens (see :mod:`lmsd.protocol.compaction`).

    By default Claude Code gets its lean system prompt (a quarter of the full one's
    instructions, two thirds of its tool text: about 9k tokens less to prefill on every cold
    start and miss); ``claude_names`` keeps Claude's names and full prompt."""
    to = to or Target(proxy_url(settings))
    env = {
        "ANTHROPIC_BASE_URL": to.url,
        # Bearer: the client key where lmsd needs one; else any value (unchecked)
        "ANTHROPIC_AUTH_TOKEN": to.key or "lmsd",
        "CLAUDE_CODE_ATTRIBUTION_HEADER": "0",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1",
        "API_TIMEOUT_MS": "600000",
    }
    if model:
        env["ANTHROPIC_MODEL"] = model
    if not claude_names:
        env[SIMPLE_PROMPT] = "1"
    if context:
        env.update(claude_code_env(context, model))
    return env


def format_env(settings: Settings, shell: str = "sh", context: LiveContext | None = None,
               model: str | None = None, to: Target | None = None, *,
               claude_names: bool = False) -> str:
    """``export`` lines for sh-like shells, ``set -gx`` for fish, ``json`` for the ``env``
    block of ``~/.claude/settings.json``. A client key is written once, as ``LMSD_API_KEY``
    (which Codex reads too), and Claude Code's token refers to it; JSON has no variables.

    Claude Code is started on ``model``, else on the loaded model's own id (its window is
    then honoured as it is, no percentage needed), unless ``claude_names``."""
    if model is None and not claude_names and context is not None:
        model = context.model
    pairs = env_vars(settings, context.tokens if context else None, model, to,
                     claude_names=claude_names)
    if shell == "json":
        return json.dumps({"env": pairs}, indent=2)
    if shell == "fish":
        lines = ["# Point Claude Code at lmsd: lmsd env --shell fish | source"]
    else:
        lines = ['# Point Claude Code at lmsd: eval "$(lmsd env)"']
    if context:
        lines.append(f"# Compaction sized for {context.tokens} tokens: {context.source}")
    values = {k: shlex.quote(v) for k, v in pairs.items()}
    if to is not None and to.key:
        if not to.key_in_env:
            values = {KEY_ENV: shlex.quote(to.key), **values}
        values["ANTHROPIC_AUTH_TOKEN"] = f"${KEY_ENV}" if shell == "fish" else f'"${KEY_ENV}"'
    if shell == "fish":
        lines += [f"set -gx {k} {v}" for k, v in values.items()]
    else:
        lines += [f"export {k}={v}" for k, v in values.items()]
    return "\n".join(lines)
