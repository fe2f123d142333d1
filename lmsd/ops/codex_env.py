"""``lmsd env --codex``: the Codex CLI ``config.toml`` that points Codex at lmsd.

Codex compacts only from the usage it is told, against ``model_auto_compact_token_limit``
(the research notes' ``codex-front.md`` section 7): without ``model_context_window`` and
that limit, an unknown model never compacts and ends in "ran out of room". lmsd reports
the whole context as ``input_tokens``, so a limit at about 80% of the loaded context leaves
room for the answer.
"""

from __future__ import annotations

import json

from ..config import Settings
from ..protocol.models import LOCAL_ALIAS
from .env import KEY_ENV, LiveContext, Target, proxy_url

COMPACT_AT = 0.8
PROVIDER = "lmsd"


def codex_config(settings: Settings, context: LiveContext | None,
                 model: str | None = None, to: Target | None = None) -> str:
    """The lines to add to ``~/.codex/config.toml`` (TOML strings are JSON strings). With a
    client key, Codex sends ``$LMSD_API_KEY`` (``lmsd env --key-name`` exports it): the
    key itself is never in this file."""
    to = to or Target(proxy_url(settings))
    model = model or (context.model if context else None) or settings.model or LOCAL_ALIAS
    lines = ["# Point Codex CLI at lmsd: add this to ~/.codex/config.toml"]
    if context:
        lines.append(f"# Compaction sized for {context.tokens} tokens: {context.source}")
    lines += [f"model = {json.dumps(model)}", f"model_provider = {json.dumps(PROVIDER)}"]
    if context:
        lines += [f"model_context_window = {context.tokens}",
                  f"model_auto_compact_token_limit = {int(context.tokens * COMPACT_AT)}"]
    lines += ["", f"[model_providers.{PROVIDER}]", 'name = "lmsd"',
              f"base_url = {json.dumps(to.url + '/v1')}",
              'wire_api = "responses"']
    if to.key:
        lines.insert(1, f"# Codex sends the client key in ${KEY_ENV}: set it in the shell "
                        "that runs codex (lmsd env --key-name NAME prints the export)")
        lines.append(f"env_key = {json.dumps(KEY_ENV)}")
    return "\n".join(lines)
