"""``lmsd doctor``'s checks of the calling shell: the Claude Code variables that point it at
lmsd, and the installed Claude Code. (Its compaction settings: ``context``.)"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from urllib.parse import urlsplit

from ...config import Settings
from ..client import ANY_HOST, local_url
from .result import FAIL, OK, WARN, Result, execute, last_line

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CLAUDE_TIMEOUT = 10.0
ENV_FIX = 'eval "$(lmsd env)"'


# -- the Claude Code environment -----------------------------------------------------------


def _same_host(a: str, b: str) -> bool:
    a, b = a.lower().strip("[]"), b.lower().strip("[]")
    return a == b or (a in LOOPBACK and b in LOOPBACK)


def points_at(url: str, listen: str) -> bool:
    """``url`` reaches lmsd listening at ``listen`` (its path aside): http, the same port,
    the same host (any loopback name for a loopback address; any host for a wildcard)."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    listen_host, _, listen_port = listen.rpartition(":")
    host_ok = listen_host.strip("[]") in ANY_HOST or _same_host(parts.hostname or "",
                                                                listen_host)
    return parts.scheme == "http" and host_ok and port == int(listen_port)


def check_base_url(settings: Settings, environ: Mapping[str, str]) -> Result:
    """``ANTHROPIC_BASE_URL`` points at lmsd's listen address."""
    want = local_url(settings.listen)
    value = environ.get("ANTHROPIC_BASE_URL", "").strip()
    if not value:
        return Result("base_url", WARN, "ANTHROPIC_BASE_URL is not set in this shell: Claude "
                      "Code started here talks to Anthropic, not lmsd", ENV_FIX)
    path = urlsplit(value).path.rstrip("/")
    wrong = f"ANTHROPIC_BASE_URL={value}"
    if path.endswith("/v1"):
        return Result("base_url", FAIL, f"{wrong} ends in /v1: Claude Code adds "
                      "/v1/messages itself", f"export ANTHROPIC_BASE_URL={want}")
    if path and not re.fullmatch(r"/session/[^/]+", path):
        return Result("base_url", FAIL, f"{wrong} has a path lmsd does not serve "
                      "(only /session/ID)", f"export ANTHROPIC_BASE_URL={want}")
    if not points_at(value, settings.listen):
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


# -- Claude Code ---------------------------------------------------------------------------


async def check_claude(environ: Mapping[str, str]) -> Result:
    """``claude --version``, if ``claude`` is on PATH."""
    path = shutil.which("claude", path=environ.get("PATH", os.defpath))
    install = "install Claude Code: npm install -g @anthropic-ai/claude-code"
    if path is None:
        return Result("claude", WARN, "claude not found on PATH", install)
    try:
        rc, out, err = await execute([path, "--version"], environ, CLAUDE_TIMEOUT)
    except TimeoutError as exc:
        return Result("claude", WARN, str(exc), f"run `{path} --version` to see why")
    except OSError as exc:
        return Result("claude", WARN, f"cannot run {path}: {exc}", install)
    if rc != 0 or not out:
        why = last_line(err, out) or "no output"
        return Result("claude", WARN, f"`claude --version` failed (exit {rc}): {why}",
                      f"reinstall it ({path}); {install}")
    return Result("claude", OK, f"{out.splitlines()[0].strip()} at {path}")

