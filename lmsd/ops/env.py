"""``lmsd env``: the environment that points Claude Code at an lmsd (this machine's, or
``--url``), its compaction sized for the context the daemon has loaded."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import httpx

from ..config import Settings, strip_api_suffix
from ..protocol.clients.compaction import SIMPLE_PROMPT, claude_code_env
from .client import TIMEOUT, Admin, ClientError, local_tls, local_url


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
    compact in time for ``context`` tokens (see :mod:`lmsd.protocol.clients.compaction`).

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
