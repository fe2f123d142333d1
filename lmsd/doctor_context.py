"""``lmsd doctor``'s context check: does the shell's Claude Code environment make it compact
before the running daemon's loaded context overflows?"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

import httpx

from .client import local_url
from .config import Settings
from .protocol.compaction import env_problem, simulate
from .protocol.models import is_claude_name

CHECK = "claude_context"


async def _loaded_context(settings: Settings, client: httpx.AsyncClient) -> int | str:
    """The smallest loaded context per the daemon's ``/status``, or why it is not known."""
    headers = {"Authorization": f"Bearer {settings.admin_token}"} if settings.admin_token \
        else {}
    try:
        response = await client.get(local_url(settings.admin_listen) + "/status",
                                    headers=headers, timeout=5.0)
        data: Any = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        data = None
    if not isinstance(data, dict):
        return "lmsd is not running (or refused the admin token), so the loaded context " \
               "is not known"
    contexts = [m.get("context_length") for m in data.get("models") or ()
                if isinstance(m, dict)]
    known = [c for c in contexts if isinstance(c, int) and c > 0]
    return min(known) if known else "no model is loaded, so the context is not known"


async def check_context_env(settings: Settings, environ: Mapping[str, str],
                            client: httpx.AsyncClient) -> tuple[str, str, str | None]:
    """(status, detail, fix): ``warn`` when Claude Code would compact too late (or far too
    early) for the loaded context."""
    context = await _loaded_context(settings, client)
    if isinstance(context, str):
        return "skip", f"not checked: {context}", None
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
