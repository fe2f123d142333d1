"""``lmsd doctor``'s context check: does the shell's Claude Code environment make it compact
before the running daemon's loaded context overflows?"""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from ...config import Settings
from ...protocol.clients.compaction import env_problem, simulate
from ...protocol.models import is_claude_name
from ..client import local_url

CHECK = "claude_context"


async def _daemon_contexts(settings: Settings, client: httpx.AsyncClient) -> list[int] | None:
    """The loaded contexts per the running daemon's ``/status``; None if it does not answer."""
    headers = {"Authorization": f"Bearer {settings.admin_token}"} if settings.admin_token \
        else {}
    try:
        response = await client.get(local_url(settings.admin_listen) + "/status",
                                    headers=headers, timeout=5.0)
        data: Any = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        data = None
    if not isinstance(data, dict):
        return None
    return [m["context_length"] for m in data.get("models") or ()
            if isinstance(m, dict) and isinstance(m.get("context_length"), int)]


async def loaded_contexts(settings: Settings, client: httpx.AsyncClient,
                          lmstudio_contexts: Callable[[], Awaitable[list[int]]]) -> list[int]:
    """The loaded contexts: the running daemon's view, else LM Studio's."""
    contexts = await _daemon_contexts(settings, client)
    if contexts is None:
        contexts = await lmstudio_contexts()
    return [c for c in contexts if c > 0]


def check_context_env(environ: Mapping[str, str], known: list[int]
                      ) -> tuple[str, str, str | None]:
    """(status, detail, fix): ``warn`` when Claude Code would compact too late (or far too
    early) for the smallest of the ``known`` loaded contexts (see :func:`loaded_contexts`)."""
    if not known:
        return "skip", "not checked: no loaded model with a known context", None
    context = min(known)
    model = environ.get("ANTHROPIC_MODEL")
    fix = 'eval "$(lmsd env)"'
    if model and not is_claude_name(model):
        fix = f'eval "$(lmsd env --model {shlex.quote(model)})"'
    problem = env_problem(environ, context)
    if problem:
        return "warn", problem, fix
    got = simulate(environ, model)
    return "ok", f"Claude Code compacts at {got.threshold} tokens, within the loaded " \
                 f"context of {context}", None
