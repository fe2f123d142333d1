"""``lmsd doctor``: check the setup end to end and say how to fix what is wrong.

Each check gives one :class:`Result` (ok, warn, fail or skip) with a one-line fix for
anything not ok: LM Studio and how it was found, the loaded models and their context,
the proxy and admin ports, the state directory, the user service, the calling shell's
Claude Code environment (does it compact in time for the loaded context?) and the
installed Claude Code. Nothing is started, loaded or changed; the only write is a
temporary file in the state directory (or the parent that would hold it), removed at once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx
import trio

from ..config import ConfigError, Settings, env_name, load_settings
from ..processes import run_bounded
from ..protocol.auth import REFUSED_STATUSES, TOKENS_WHERE, key_refused_answer
from ..protocol.errors import AnthropicError
from ..protocol.lmstudio import V0, V1, ModelList, parse_models
from ..upstreams.discovery import Found, discover, probe
from ..upstreams.lms import LmsCli
from .client import ANY_HOST, GREEN, RED, RESET, YELLOW, local_url, use_color
from .doctor_context import CHECK as CONTEXT_CHECK
from .doctor_context import check_context_env

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
MARKS = {OK: "✓", WARN: "!", FAIL: "✗", SKIP: "-"}
WORDS = {OK: "ok", WARN: "warn", FAIL: "FAIL", SKIP: "skip"}
COLORS = {OK: GREEN, WARN: YELLOW, FAIL: RED, SKIP: ""}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
HTTP_TIMEOUT = 2.0
SERVICE_TIMEOUT = 5.0
CLAUDE_TIMEOUT = 10.0
LMS_TIMEOUT = 5.0
SYSTEMD_UNIT = "lmsd.service"
LAUNCHD_LABEL = "ai.lmsd"
ENV_FIX = 'eval "$(lmsd env)"'


@dataclass(frozen=True)
class Result:
    """One finding: ``status`` is "ok", "warn", "fail" or "skip"; ``fix`` is None when ok."""

    check: str
    status: str
    detail: str
    fix: str | None = None


# -- running programs -------------------------------------------------------------------------


async def _execute(argv: list[str], env: Mapping[str, str],
                   timeout: float) -> tuple[int, str, str]:
    """Run ``argv`` (no shell): exit status, stdout, stderr. OSError, TimeoutError."""
    done = await run_bounded(argv, timeout=timeout, env=env)
    return (done.returncode, done.stdout.decode("utf-8", "replace").strip(),
            done.stderr.decode("utf-8", "replace").strip())


def _last_line(*texts: str) -> str:
    for text in texts:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return ""


# -- 1, 2: LM Studio and its models -----------------------------------------------------------


async def check_lmstudio(settings: Settings, environ: Mapping[str, str],
                         client: httpx.AsyncClient) -> tuple[Result, Found]:
    """Where LM Studio is, how it was found, and whether it answers."""
    home = Path(environ["HOME"]) if environ.get("HOME") else None
    lms = LmsCli(timeout=LMS_TIMEOUT, env=environ)
    found = await discover(settings.upstream, client=client, lms=lms, home=home)
    where = f"LM Studio at {found.url} (found by: {found.source})"
    if found.reachable:
        return Result("lmstudio", OK, f"{where} answers"), found
    if found.source == "config":
        fix = (f"start LM Studio's server (`lms server start`), or correct upstream "
               f"(now {settings.upstream})")
    else:
        fix = ("start LM Studio's server: `lms server start`, or set upstream = URL "
               f"({env_name('upstream')} or --upstream)")
    return Result("lmstudio", FAIL, f"{where} is not reachable", fix), found


def check_notes(settings: Settings) -> list[Result]:
    """What loading the settings corrected (an upstream URL ending in /v1, say)."""
    return [Result("config", WARN, note, f"set {key} = {getattr(settings, key)!r}")
            for key, note in settings.notes]


async def _get_json(client: httpx.AsyncClient, url: str, api_key: str) -> Any:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = await client.get(url, headers=headers, timeout=HTTP_TIMEOUT)
    if response.status_code == 404:
        return None
    if response.status_code in REFUSED_STATUSES:
        raise key_refused_answer(response.status_code, response.content, key=api_key)
    response.raise_for_status()
    return response.json()


async def _models(client: httpx.AsyncClient, url: str, api_key: str) -> ModelList | None:
    """LM Studio's loaded LLMs and every LLM it has, read as the watcher reads them."""
    for path in (V1, V0):
        listing = parse_models(path, await _get_json(client, f"{url}{path}", api_key))
        if listing is not None:
            return listing
    return None


async def check_api(settings: Settings, found: Found, client: httpx.AsyncClient) -> Result:
    """Which API lmsd speaks to the upstream, and why (as the daemon decides it)."""
    if settings.upstream_api != "auto":
        return Result("api", OK, f"{settings.upstream_api} (configured: upstream_api)")
    if not found.reachable:
        return Result("api", SKIP, "decided when the upstream first answers")
    if await probe(client, found.url):
        return Result("api", OK, "responses, with previous_response_id chaining "
                      "(LM Studio answered /lmstudio-greeting)")
    return Result("api", OK, "chat completions, the full history every turn (not LM "
                  "Studio: the portable /v1/chat/completions)")


async def check_models(settings: Settings, found: Found, client: httpx.AsyncClient) -> Result:
    """A model is loaded, with at least ``min_context`` tokens of context."""
    if not found.reachable:
        return Result("model", SKIP, "not checked: LM Studio is not reachable")
    minimum = settings.min_context
    try:
        listed = await _models(client, found.url, settings.upstream_api_key)
    except AnthropicError as exc:  # LM Studio's "Require Authentication"
        return Result("api_key", FAIL, exc.message, f"make a token in {TOKENS_WHERE}")
    except (httpx.HTTPError, ValueError) as exc:
        return Result("model", WARN, f"could not read the models from {found.url}: "
                      f"{exc or type(exc).__name__}", "check that upstream is LM Studio")
    if listed is None:
        return Result("model", WARN, f"{found.url} has neither /api/v1/models nor "
                      "/api/v0/models, so the context cannot be checked",
                      "check that upstream is LM Studio itself")
    loaded, known = listed.loaded, listed.known
    if not loaded:
        model = known[0] if known else "<model>"
        return Result("model", FAIL, f"no model is loaded in LM Studio at {found.url}",
                      f"load a model in LM Studio, or run `lms load {model} -c {minimum}`")
    parts, fixes, status = [], [], OK
    for m in loaded:
        name = m.key if m.instance_id == m.key else f"{m.key} as {m.instance_id}"
        ctx = m.context_length
        if ctx is None or ctx >= minimum:
            parts.append(f"{name} ({ctx if ctx is not None else '?'} tokens of context)")
            continue
        status = WARN
        parts.append(f"{name} ({ctx} tokens of context, below min_context {minimum})")
        if m.max_context_length is not None and m.max_context_length < minimum:
            fixes.append(f"{m.key} holds at most {m.max_context_length} tokens: load a model "
                         f"with a longer context, or lower min_context")
        else:
            fixes.append(f"`lms unload {m.instance_id} && lms load {m.key} --exact "
                         f"-c {minimum}`")
    detail = "loaded: " + ", ".join(parts)
    if status == OK:
        return Result("model", OK, detail)
    if settings.watch:
        detail += f"; lmsd raises it to {minimum} while it runs (watch = true)"
    return Result("model", WARN, detail, fixes[0])


# -- 3: the ports -----------------------------------------------------------------------------


async def _accepts(host: str, port: int) -> bool:
    """True if something accepts TCP connections at host:port."""
    with trio.move_on_after(HTTP_TIMEOUT):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError:
            return False
        await stream.aclose()
        return True
    return False


def _bind_problem(host: str, port: int) -> str | None:
    """Why lmsd could not listen on host:port (as hypercorn binds), or None."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve {host}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


async def _identify(client: httpx.AsyncClient, url: str, admin: bool,
                    token: str) -> tuple[str, str]:
    """("lmsd", version) / ("refused", "") / ("other", what answered)."""
    headers = {"Authorization": f"Bearer {token}"} if admin and token else {}
    try:
        response = await client.get(url + ("/healthz" if admin else "/"), headers=headers,
                                    timeout=HTTP_TIMEOUT)
    except httpx.HTTPError as exc:
        return "other", f"it does not answer HTTP: {exc or type(exc).__name__}"
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return "other", f"it answered HTTP {response.status_code}, not lmsd's JSON"
    if admin and response.status_code == 200 and data.get("status") == "ok" and data.get(
            "version"):
        return "lmsd", str(data["version"])
    if not admin and response.status_code == 200 and data.get("service") == "lmsd":
        return "lmsd", str(data.get("version", "?"))
    error = data.get("error")
    if (admin and response.status_code == 401 and isinstance(error, dict)
            and error.get("type") == "authentication_error"):
        return "refused", ""
    return "other", f"it answered HTTP {response.status_code}, not as lmsd"


async def check_port(settings: Settings, key: str, client: httpx.AsyncClient) -> Result:
    """``key`` ("listen" or "admin_listen") is free, or lmsd already serves there."""
    admin = key == "admin_listen"
    check = "admin_port" if admin else "proxy_port"
    listen = getattr(settings, key)
    host, _, port_text = listen.rpartition(":")
    host, port = host.strip("[]"), int(port_text)
    setting = f"set {key} = HOST:PORT (--{key.replace('_', '-')} or {env_name(key)})"
    if port == 0:
        return Result(check, OK, f"{listen}: any free port is picked at start")
    target = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if not await _accepts(target, port):
        problem = _bind_problem(host, port)
        if problem is None:
            return Result(check, OK, f"{listen} is free")
        return Result(check, FAIL, f"lmsd cannot listen on {listen}: {problem}", setting)
    what, info = await _identify(client, local_url(listen), admin, settings.admin_token)
    if what == "lmsd":
        return Result(check, OK, f"lmsd {info} is running here ({listen})")
    if what == "refused":
        return Result(check, WARN, f"lmsd answers on {listen} but refused the admin token",
                      f"set {env_name('admin_token')} to the daemon's admin_token")
    return Result(check, FAIL, f"port {port} is taken by another program ({info})",
                  f"stop that program, or {setting}")


# -- 4: the state directory -------------------------------------------------------------------


def check_state_dir(settings: Settings) -> Result:
    """The state directory (or, if missing, the directory that would hold it) is writable."""
    target = Path(settings.state_dir)
    setting = f"set state_dir = DIR ({env_name('state_dir')} or the config file)"
    existing = target
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return Result("state_dir", FAIL, f"{existing} is not a directory, so lmsd cannot "
                      f"create {target}", setting)
    try:
        fd, name = tempfile.mkstemp(prefix=".lmsd-doctor-", dir=existing)
        try:
            os.write(fd, b"lmsd doctor\n")
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        return Result("state_dir", FAIL, f"{existing} is not writable: "
                      f"{exc.strerror or exc}", f"make it writable (chown/chmod), or {setting}")
    if existing != target:
        return Result("state_dir", OK, f"{target} does not exist yet; lmsd creates it in "
                      f"{existing}, which is writable")
    db = target / "sessions.sqlite3"
    if db.exists() and not os.access(db, os.R_OK | os.W_OK):
        return Result("state_dir", WARN, f"{db} is not writable: session chains are kept "
                      "in memory only", f"make {db} writable (chown/chmod)")
    return Result("state_dir", OK, f"{target} is writable")


# -- 5: the user service ----------------------------------------------------------------------

NO_MANAGER = "run `lmsd serve` under your own supervisor"
_NO_BUS = ("failed to connect to", "not been booted with systemd", "no medium found",
           "$dbus_session_bus_address")
_INSTALLED = {"enabled", "enabled-runtime", "linked", "linked-runtime", "alias", "static",
              "indirect", "generated", "transient", "disabled"}


async def _systemd(environ: Mapping[str, str]) -> Result:
    path = shutil.which("systemctl", path=environ.get("PATH", os.defpath))
    if path is None:
        return Result("service", WARN, "no service manager here (systemctl not found)",
                      NO_MANAGER)
    active, active_err = "", ""
    try:
        rc, state, err = await _execute([path, "--user", "is-enabled", SYSTEMD_UNIT],
                                        environ, SERVICE_TIMEOUT)
        if state in _INSTALLED:
            _, active, active_err = await _execute(
                [path, "--user", "is-active", SYSTEMD_UNIT], environ, SERVICE_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        return Result("service", WARN, f"systemctl failed: {exc}", NO_MANAGER)
    if state == "not-found" or "no such file" in err.lower():
        return Result("service", WARN, f"{SYSTEMD_UNIT} is not installed",
                      "`lmsd service install`")
    if state == "masked":
        return Result("service", FAIL, f"{SYSTEMD_UNIT} is masked",
                      "systemctl --user unmask lmsd && systemctl --user start lmsd")
    problem = err if state not in _INSTALLED else active_err
    if state not in _INSTALLED or any(s in problem.lower() for s in _NO_BUS):
        why = _last_line(problem) or f"systemctl exit {rc}"
        return Result("service", WARN, f"no user service manager here ({why})", NO_MANAGER)
    if active == "active":
        if state == "disabled":
            return Result("service", WARN, f"{SYSTEMD_UNIT} is running but not enabled: it "
                          "will not start at login", "systemctl --user enable lmsd")
        return Result("service", OK, f"{SYSTEMD_UNIT} is {state} and active")
    return Result("service", FAIL, f"{SYSTEMD_UNIT} is {state} but {active or 'not active'}",
                  "systemctl --user restart lmsd (why it stopped: "
                  "journalctl --user -u lmsd -n 50)")


async def _launchd(environ: Mapping[str, str]) -> Result:
    path = shutil.which("launchctl", path=environ.get("PATH", os.defpath))
    if path is None:
        return Result("service", WARN, "no service manager here (launchctl not found)",
                      NO_MANAGER)
    target = f"gui/{os.getuid()}/{LAUNCHD_LABEL}"
    try:
        rc, out, err = await _execute([path, "print", target], environ, SERVICE_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        return Result("service", WARN, f"launchctl failed: {exc}", NO_MANAGER)
    home = Path(environ.get("HOME") or Path.home())
    plist = home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
    if rc != 0 and rc != 113 and "could not find service" not in (out + err).lower():
        why = _last_line(err, out) or f"exit {rc}"
        return Result("service", WARN, f"launchctl print {target} failed: {why}", NO_MANAGER)
    if rc != 0:
        if plist.exists():
            return Result("service", FAIL, f"{plist} is installed but not loaded",
                          f"launchctl bootstrap gui/$UID {plist}")
        return Result("service", WARN, f"{LAUNCHD_LABEL} is not installed",
                      "`lmsd service install`")
    state = re.search(r"^\s*state = (.+)$", out, re.MULTILINE)
    if state and state.group(1).strip() == "running":
        return Result("service", OK, f"{LAUNCHD_LABEL} is loaded and running")
    what = state.group(1).strip() if state else "in an unknown state"
    return Result("service", FAIL, f"{LAUNCHD_LABEL} is loaded but {what}",
                  f"launchctl kickstart -k gui/$UID/{LAUNCHD_LABEL}")


async def check_service(environ: Mapping[str, str], platform: str) -> Result:
    """The lmsd user service is installed and running (systemd or launchd)."""
    if platform.startswith("linux"):
        return await _systemd(environ)
    if platform == "darwin":
        return await _launchd(environ)
    return Result("service", WARN, "no service manager here", NO_MANAGER)


# -- 6: the Claude Code environment -----------------------------------------------------------


def _same_host(a: str, b: str) -> bool:
    a, b = a.lower().strip("[]"), b.lower().strip("[]")
    return a == b or (a in LOOPBACK and b in LOOPBACK)


def check_base_url(settings: Settings, environ: Mapping[str, str]) -> Result:
    """``ANTHROPIC_BASE_URL`` points at lmsd's listen address."""
    want = local_url(settings.listen)
    value = environ.get("ANTHROPIC_BASE_URL", "").strip()
    if not value:
        return Result("base_url", WARN, "ANTHROPIC_BASE_URL is not set in this shell: Claude "
                      "Code started here talks to Anthropic, not lmsd", ENV_FIX)
    parts = urlsplit(value)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = -1
    path = parts.path.rstrip("/")
    listen_host, _, listen_port = settings.listen.rpartition(":")
    wrong = f"ANTHROPIC_BASE_URL={value}"
    if path.endswith("/v1"):
        return Result("base_url", FAIL, f"{wrong} ends in /v1: Claude Code adds "
                      "/v1/messages itself", f"export ANTHROPIC_BASE_URL={want}")
    if path and not re.fullmatch(r"/session/[^/]+", path):
        return Result("base_url", FAIL, f"{wrong} has a path lmsd does not serve "
                      "(only /session/ID)", f"export ANTHROPIC_BASE_URL={want}")
    host_ok = listen_host.strip("[]") in ANY_HOST or _same_host(parts.hostname or "",
                                                                listen_host)
    if parts.scheme != "http" or not host_ok or port != int(listen_port):
        return Result("base_url", FAIL, f"{wrong} does not point at lmsd ({want})", ENV_FIX)
    return Result("base_url", OK, f"ANTHROPIC_BASE_URL={value} points at lmsd")


def check_attribution(settings: Settings, environ: Mapping[str, str]) -> Result:
    """``CLAUDE_CODE_ATTRIBUTION_HEADER=0``: no per-conversation header in the prompt."""
    value = environ.get("CLAUDE_CODE_ATTRIBUTION_HEADER")
    if value == "0":
        return Result("attribution_header", OK, "CLAUDE_CODE_ATTRIBUTION_HEADER=0: Claude Code "
                      "sends no billing header")
    now = "is not set" if value is None else f"is {value!r}, not 0"
    if settings.strip_billing_header:
        detail = (f"CLAUDE_CODE_ATTRIBUTION_HEADER {now}: harmless through lmsd, which "
                  "strips the billing header anyway; set it to keep prompts cache-stable "
                  "for servers that do not")
    else:
        detail = (f"CLAUDE_CODE_ATTRIBUTION_HEADER {now} and strip_billing_header = false: "
                  "the header changes every conversation and defeats LM Studio's prefix cache")
    return Result("attribution_header", WARN, detail,
                  f"export CLAUDE_CODE_ATTRIBUTION_HEADER=0 (or {ENV_FIX})")


def check_auth(environ: Mapping[str, str]) -> Result:
    """Claude Code has a token, so it does not ask to log in (lmsd ignores its value)."""
    for name in ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY"):
        if environ.get(name):
            return Result("auth_token", OK, f"{name} is set (lmsd does not check its value)")
    return Result("auth_token", WARN, "neither ANTHROPIC_AUTH_TOKEN nor ANTHROPIC_API_KEY is "
                  "set: Claude Code asks you to log in",
                  "export ANTHROPIC_AUTH_TOKEN=lmsd (any value: lmsd does not check it)")


# -- 7: Claude Code ---------------------------------------------------------------------------


async def check_claude(environ: Mapping[str, str]) -> Result:
    """``claude --version``, if ``claude`` is on PATH."""
    path = shutil.which("claude", path=environ.get("PATH", os.defpath))
    install = "install Claude Code: npm install -g @anthropic-ai/claude-code"
    if path is None:
        return Result("claude", WARN, "claude not found on PATH", install)
    try:
        rc, out, err = await _execute([path, "--version"], environ, CLAUDE_TIMEOUT)
    except TimeoutError as exc:
        return Result("claude", WARN, str(exc), f"run `{path} --version` to see why")
    except OSError as exc:
        return Result("claude", WARN, f"cannot run {path}: {exc}", install)
    if rc != 0 or not out:
        why = _last_line(err, out) or "no output"
        return Result("claude", WARN, f"`claude --version` failed (exit {rc}): {why}",
                      f"reinstall it ({path}); {install}")
    return Result("claude", OK, f"{out.splitlines()[0].strip()} at {path}")


# -- all together -----------------------------------------------------------------------------


async def _context(settings: Settings, env: Mapping[str, str], local: httpx.AsyncClient,
                   found: Found, upstream: httpx.AsyncClient) -> Result:
    """The shell's Claude Code settings against the loaded context (see doctor_context)."""

    async def lmstudio_contexts() -> list[int]:
        if not found.reachable:
            return []
        try:
            listed = await _models(upstream, found.url, settings.upstream_api_key)
        except (httpx.HTTPError, ValueError):
            return []
        return [m.context_length for m in listed.loaded if m.context_length] if listed else []

    return Result(CONTEXT_CHECK, *await check_context_env(settings, env, local,
                                                          lmstudio_contexts))


async def diagnose(settings: Settings, environ: Mapping[str, str] | None = None, *,
                   platform: str = sys.platform) -> list[Result]:
    """Run every check (concurrently); the results in a fixed order.

    ``environ`` is the calling shell's environment (default ``os.environ``): it gives the
    Claude Code variables, and the PATH and HOME the programs are looked up and run with.
    LM Studio's home is found as :func:`lmsd.upstreams.discovery.discover` finds it.
    """
    env = dict(os.environ if environ is None else environ)
    async with httpx.AsyncClient() as upstream, httpx.AsyncClient(trust_env=False) as local:

        async def lmstudio() -> list[Result]:
            first, found = await check_lmstudio(settings, env, upstream)
            return [first, *check_notes(settings), await check_api(settings, found, upstream),
                    await check_models(settings, found, upstream),
                    await _context(settings, env, local, found, upstream)]

        async def one(make: Callable[[], Awaitable[Result]]) -> list[Result]:
            return [await make()]

        async def plain(*results: Result) -> list[Result]:
            return list(results)

        jobs: list[Callable[[], Awaitable[list[Result]]]] = [
            lmstudio,
            partial(one, partial(check_port, settings, "listen", local)),
            partial(one, partial(check_port, settings, "admin_listen", local)),
            partial(plain, check_state_dir(settings)),
            partial(one, partial(check_service, env, platform)),
            partial(plain, check_base_url(settings, env), check_attribution(settings, env),
                    check_auth(env)),
            partial(one, partial(check_claude, env)),
        ]
        slots: list[list[Result]] = [[] for _ in jobs]

        async def fill(i: int) -> None:
            slots[i] = await jobs[i]()

        async with trio.open_nursery() as nursery:
            for i in range(len(jobs)):
                nursery.start_soon(fill, i)
    return [r for slot in slots for r in slot]


def format_results(results: list[Result], *, fancy: bool = False, color: bool = False) -> str:
    """One line per result: mark, check, finding and, unless ok, the fix."""
    width = max((len(r.check) for r in results), default=0)
    lines = []
    for r in results:
        mark = MARKS[r.status] if fancy else WORDS[r.status].ljust(4)
        if color and COLORS[r.status]:
            mark = f"{COLORS[r.status]}{mark}{RESET}"
        line = f"{mark} {r.check.replace('_', ' ').ljust(width)}  {r.detail}"
        if r.fix and r.status != OK:
            line += f"; fix: {r.fix}"
        lines.append(line)
    return "\n".join(lines)


def _utf8_terminal(stream: TextIO) -> bool:
    encoding = (getattr(stream, "encoding", "") or "").lower().replace("-", "")
    isatty = getattr(stream, "isatty", None)
    return encoding == "utf8" and bool(isatty and isatty())


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``lmsd doctor`` to the CLI."""
    parser = sub.add_parser(
        "doctor", help="check the setup and say how to fix it",
        description="Check LM Studio, the loaded models, the ports, the state directory, "
        "the service and this shell's Claude Code environment. Exit status 1 if a check "
        "failed (warnings allowed).")
    defaults = Settings()
    for key, metavar in (("listen", "HOST:PORT"), ("admin_listen", "HOST:PORT"),
                         ("upstream", "URL")):
        parser.add_argument("--" + key.replace("_", "-"), dest=key, default=None,
                            metavar=metavar, help=f"env {env_name(key)}; default "
                            f"{getattr(defaults, key)!r}")
    parser.add_argument("--config", dest="config", default=None, metavar="FILE",
                        help=f"a TOML config file; env {env_name('config')}")
    parser.add_argument("--json", dest="as_json", action="store_true",
                        help="print a JSON list of {check, status, detail, fix}")


def run(args: argparse.Namespace) -> int:
    """``lmsd doctor``: print the results; 0 unless a check failed."""
    flags = {k: getattr(args, k, None) for k in ("config", "listen", "admin_listen",
                                                  "upstream")}
    try:
        settings = load_settings(flags)
    except ConfigError as exc:
        results = [Result("config", FAIL, str(exc), "correct the setting it names")]
    else:
        try:
            results = trio.run(diagnose, settings, dict(os.environ))
        except KeyboardInterrupt:
            return 130
    out = sys.stdout
    if getattr(args, "as_json", False):
        print(json.dumps([asdict(r) for r in results], indent=2), file=out)
    else:
        print(format_results(results, fancy=_utf8_terminal(out), color=use_color(out)),
              file=out)
    out.flush()
    return 1 if any(r.status == FAIL for r in results) else 0
