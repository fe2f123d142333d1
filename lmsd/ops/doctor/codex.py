"""``lmsd doctor``'s Codex check: does Codex CLI's ``config.toml`` reach this lmsd the way
Codex 0.171 must (the research notes' ``codex-front.md``, sections 1 and 7)?

Only a ``[model_providers.X]`` whose ``base_url`` points at lmsd's ``listen`` address is
checked: ``wire_api`` must be ``"responses"`` (Codex 0.171 refuses ``"chat"`` at load),
and Codex compacts only when the usage it is told crosses ``model_auto_compact_token_limit``,
so ``model_context_window`` must be set and no larger than the loaded context, and the limit
below it. No config, or none of its providers at lmsd: nothing to check, not an error.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ...config import Settings
from ..client import local_url
from .result import FAIL, OK, SKIP, WARN, Result
from .shell import points_at

CHECK = "codex_config"
FIX = "lmsd env --codex prints the provider block, sized for the loaded context"
_RANK = {OK: 0, WARN: 1, FAIL: 2}


def config_path(environ: Mapping[str, str]) -> Path:
    """``$CODEX_HOME/config.toml``, by default ``~/.codex/config.toml``."""
    if environ.get("CODEX_HOME"):
        return Path(environ["CODEX_HOME"]) / "config.toml"
    return Path(environ.get("HOME") or os.path.expanduser("~")) / ".codex" / "config.toml"


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _scopes(data: dict[str, Any], provider: str) -> list[tuple[str, dict[str, Any]]]:
    """Where Codex reads the window and limit when it uses ``provider``: each profile that
    selects it (over the top level), and the top level when it selects it (or nothing does:
    ``-c model_provider=...`` then reads the top level)."""
    profiles = data.get("profiles") if isinstance(data.get("profiles"), dict) else {}
    scopes = [(f"[profiles.{name}]", {**data, **profile})
              for name, profile in profiles.items()
              if isinstance(profile, dict) and profile.get("model_provider") == provider]
    if data.get("model_provider") == provider or not scopes:
        scopes.insert(0, ("", data))
    return scopes


def _window_problems(scope: dict[str, Any], context: int | None) -> list[tuple[str, str]]:
    window = _whole(scope.get("model_context_window"))
    limit = _whole(scope.get("model_auto_compact_token_limit"))
    found: list[tuple[str, str]] = []
    if window is None:
        found.append((WARN, "model_context_window is not set: Codex does not know a local "
                            "model's context, never compacts and ends in \"ran out of room\""))
    elif context is not None and window > context:
        found.append((WARN, f"model_context_window = {window} is larger than the loaded "
                            f"context ({context}): Codex compacts too late and overflows "
                            "first"))
    known = [c for c in (window, context) if c is not None]
    ceiling = min(known) if known else None
    if limit is None:
        found.append((WARN, "model_auto_compact_token_limit is not set: Codex may never "
                            "compact a model it does not know"))
    elif ceiling is not None and limit >= ceiling:
        what = "model_context_window" if ceiling == window else "the loaded context"
        found.append((WARN, f"model_auto_compact_token_limit = {limit} is not below "
                            f"{what} ({ceiling}): Codex compacts only once the context "
                            "is full"))
    return found


def _provider_problems(table: dict[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    url = str(table.get("base_url"))
    if urlsplit(url).path.rstrip("/") != "/v1":
        found.append((FAIL, f"base_url = {url!r} must end in /v1 (Codex adds /responses)"))
    wire = table.get("wire_api", "responses")
    if wire == "chat":
        found.append((FAIL, 'wire_api = "chat": Codex 0.171 refuses it ("no longer '
                            'supported"); lmsd serves Codex on "responses"'))
    elif wire != "responses":
        found.append((FAIL, f'wire_api = {wire!r}: lmsd serves Codex on "responses"'))
    return found


def check_codex(settings: Settings, environ: Mapping[str, str],
                contexts: list[int]) -> Result:
    """The Codex config against lmsd's address and the smallest loaded context."""
    path = config_path(environ)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Result(CHECK, SKIP, f"no Codex config at {path}: not checked "
                      "(`lmsd env --codex` prints one)")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return Result(CHECK, WARN, f"cannot read {path}: {exc}",
                      f"correct it (Codex cannot start with it either); {FIX}")
    providers = data.get("model_providers")
    ours = [(name, table) for name, table in
            (providers.items() if isinstance(providers, dict) else ())
            if isinstance(table, dict) and isinstance(table.get("base_url"), str)
            and points_at(table["base_url"], settings.listen)]
    if not ours:
        return Result(CHECK, SKIP, f"{path} has no model provider pointing at lmsd "
                      f"({local_url(settings.listen)}/v1): not checked")
    context = min(contexts) if contexts else None
    found: list[tuple[str, str]] = []
    for name, table in ours:
        here = f"[model_providers.{name}]"
        found += [(s, f"{here} {text}") for s, text in _provider_problems(table)]
        for where, scope in _scopes(data, name):
            found += [(s, f"{where} {text}" if where else text)
                      for s, text in _window_problems(scope, context)]
    if not found:
        names = ", ".join(f"[model_providers.{name}]" for name, _ in ours)
        _, scope = _scopes(data, ours[0][0])[0]
        loaded = f"the loaded context is {context}" if context is not None else \
            "the loaded context is unknown: not compared"
        return Result(CHECK, OK, f"{path}: {names} points at lmsd (wire_api \"responses\"); "
                      f"Codex compacts at {scope['model_auto_compact_token_limit']} of a "
                      f"{scope['model_context_window']}-token window; {loaded}")
    worst = max((s for s, _ in found), key=_RANK.__getitem__)
    return Result(CHECK, worst, f"{path}: " + "; ".join(dict.fromkeys(t for _, t in found)),
                  FIX)
