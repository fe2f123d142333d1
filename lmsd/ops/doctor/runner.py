"""``lmsd doctor``'s checks, all together: run every one concurrently, the results in a
fixed order; with a daemon running, the upstreams it uses are the ones checked.

Each check gives one :class:`Result` (ok, warn, fail or skip) with a one-line fix for
anything not ok: LM Studio and how it was found, the loaded models and their context,
the proxy and admin ports, the state directory, the user service, the calling shell's
Claude Code environment (does it compact in time for the loaded context?), the installed
Claude Code, and Codex CLI's provider block when its config points at lmsd. Nothing is
started, loaded or changed; the only write is a temporary file in the state directory (or
the parent that would hold it), removed at once.

The checks live by what they look at: ``upstream`` (LM Studio, the API, the models),
``host`` (ports, state directory, service), ``network`` (who may reach lmsd), ``shell``
and ``context`` (the calling shell's Claude Code), ``codex`` (Codex CLI's config.toml, if
any); ``command`` prints what this module gathers.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from functools import partial

import httpx
import trio

from ...config import KINDS, Settings, UpstreamConfig, configured_upstreams, default_name
from ...protocol.failures import Failure
from ...upstreams.discovery import Found
from ..client import local_url
from .codex import check_codex
from .context import CHECK as CONTEXT_CHECK
from .context import check_context_env, loaded_contexts
from .host import check_port, check_service, check_state_dir
from .network import check_network
from .result import FAIL, OK, WARN, Result
from .shell import check_attribution, check_auth, check_base_url, check_claude
from .started import STOPPED, check_started
from .upstream import (
    check_api,
    check_cache,
    check_lmstudio,
    check_models,
    check_notes,
    read_models,
)


async def _contexts(settings: Settings, local: httpx.AsyncClient, found: Found,
                    upstream: httpx.AsyncClient) -> list[int]:
    """The loaded contexts the Claude Code and Codex settings must fit (``context``)."""

    async def lmstudio_contexts() -> list[int]:
        if not found.reachable:
            return []
        try:
            listed = await read_models(upstream, found.url, settings.upstream_api_key)
        except (httpx.HTTPError, ValueError, Failure):  # the key refused: check_models says
            return []
        return [m.context_length for m in listed.loaded if m.context_length] if listed else []

    return await loaded_contexts(settings, local, lmstudio_contexts)


def crashed(check: str, exc: BaseException) -> Result:
    """An exception a check did not expect, as that check's FAIL: one line naming it."""
    return Result(check, FAIL, f"the check failed: {type(exc).__name__}: "
                  f"{str(exc) or 'no message'}",
                  "report it as an lmsd bug, with `lmsd doctor --json`")


async def guarded(check: str, make: Callable[[], Awaitable[Result]]) -> Result:
    """One check's result; an exception it did not expect is that check's FAIL, never a
    crash of doctor (nor an exception group out of its nursery)."""
    try:
        return await make()
    except Exception as exc:  # any exception at all: this check failed
        return crashed(check, exc)


async def _found(settings: Settings, env: dict[str, str], upstream: httpx.AsyncClient,
                 source: str | None) -> tuple[Result, Found]:
    """``check_lmstudio``, guarded; ``source`` says who named the URL (the daemon)."""
    try:
        first, found = await check_lmstudio(settings, env, upstream)
    except Exception as exc:  # any exception at all: this check failed
        return crashed("lmstudio", exc), Found(settings.upstream, source or "config", False)
    if source is not None:
        found = replace(found, source=source)
        first = replace(first, detail=first.detail.replace("(found by: config)",
                                                           f"(found by: {source})"))
    return first, found


async def every_upstream(settings: Settings, env: dict[str, str],
                         upstream: httpx.AsyncClient, local: httpx.AsyncClient, *,
                         source: str | None = None, named: bool = True,
                         learned: Mapping[str, str] | None = None,
                         parked: frozenset[str] = frozenset()) -> list[Result]:
    """The upstream checks once per upstream the daemon uses (``upstream [name]``, ...);
    the client settings are checked against the smallest loaded context of them all.
    ``source``: who named these upstreams (the running daemon), else the config;
    ``learned``: per upstream, what the running daemon learned of its cache; ``parked``:
    the started models whose engines the daemon stopped on purpose (not down)."""
    results: list[Result] = list(check_notes(settings))
    contexts: list[int] = []
    for config in configured_upstreams(settings):
        if config.name in parked:  # nothing answers there until a request starts it
            results.append(Result(f"upstream [{config.name}]" if named else "upstream", OK,
                                  f"{config.name}: {STOPPED}"))
            continue
        api = "responses" if config.kind == "lmstudio" else config.kind
        one = settings.replace(upstream=config.url, upstreams=[], upstream_api=api,
                               upstream_api_key=config.api_key or settings.upstream_api_key)
        first, found = await _found(one, env, upstream, source)
        for result in (first, await guarded("api", partial(check_api, one, found, upstream)),
                       await guarded("model", partial(check_models, one, found, upstream)),
                       gateway_cache(settings, config) or
                       await guarded("cache", partial(check_cache, one, found,
                                                      (learned or {}).get(config.name)))):
            results.append(replace(result, check=f"{result.check} [{config.name}]")
                           if named else result)
        try:
            contexts += await _contexts(one, local, found, upstream)
        except Exception:  # the context check then says "not checked"
            continue
    smallest = [min(contexts)] if contexts else []
    return [*results, Result(CONTEXT_CHECK, *check_context_env(env, smallest)),
            await guarded("codex", partial(_codex, settings, env, smallest))]


def gateway_cache(settings: Settings, config: UpstreamConfig) -> Result | None:
    """For a cluster's gateway: which one, and the headers that carry the session key
    (it keeps each conversation's cache on a replica; lmsd steers no slots through it)."""
    if not config.gateway:
        return None
    headers = ", ".join(settings.affinity_headers) or "none (affinity_headers is empty)"
    return Result("cache", OK if settings.affinity_headers else WARN,
                  f"gateway {config.gateway}: it places each conversation on a replica; "
                  f"the session key goes in {headers}",
                  None if settings.affinity_headers else
                  "set affinity_headers to the header the gateway reads")


async def started(settings: Settings, env: dict[str, str]) -> list[Result]:
    """The models lmsd starts itself (``started.py``), as a job of their own."""
    return check_started(settings, env)


async def _codex(settings: Settings, env: dict[str, str], contexts: list[int]) -> Result:
    return check_codex(settings, env, contexts)


async def daemon_upstreams(settings: Settings, local: httpx.AsyncClient,
                           learned: dict[str, str] | None = None,
                           parked: set[str] | None = None) -> list[UpstreamConfig] | None:
    """The upstreams the daemon running at ``admin_listen`` uses (its ``/status``), with
    the keys this shell's settings give them; None when no daemon answers there.
    ``learned`` gets, per upstream, what the daemon found its slot restores do; ``parked``
    the started models whose engines are stopped (or starting) on purpose."""
    headers = {"Authorization": f"Bearer {settings.admin_token}"} if settings.admin_token \
        else {}
    try:
        answer = await local.get(local_url(settings.admin_listen) + "/status",
                                 headers=headers, timeout=5.0)
        data = answer.json() if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    rows = data.get("upstreams") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        return None
    keys = {c.name: c.api_key for c in settings.upstream_list()}
    used = []
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("url"), str):
            continue
        name = str(row.get("name") or default_name(row["url"]))
        kind = row.get("kind") if row.get("kind") in KINDS else "auto"
        gateway = row.get("gateway", {}).get("name", "") if isinstance(
            row.get("gateway"), dict) else ""
        used.append(UpstreamConfig(url=row["url"], name=name, kind=kind,
                                   api_key=keys.get(name, ""), gateway=str(gateway)))
        if parked is not None and row.get("parked") is True:
            parked.add(name)
        cache = row.get("cache")
        if learned is not None and isinstance(cache, dict) and \
                isinstance(cache.get("restores"), dict) and isinstance(cache.get("restore"), str):
            learned[name] = cache["restore"]
    return used or None


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
            learned: dict[str, str] = {}
            parked: set[str] = set()
            used = await daemon_upstreams(settings, local, learned, parked)
            if used is not None:  # what the running daemon uses, not what doctor would
                return await every_upstream(settings.replace(upstreams=used), env,
                                            upstream, local, source="the running daemon",
                                            named=len(used) > 1, learned=learned,
                                            parked=frozenset(parked))
            # several: the same checks for each, named by it
            return await every_upstream(settings, env, upstream, local,
                                        named=bool(settings.upstreams))

        async def one(make: Callable[[], Awaitable[Result]]) -> list[Result]:
            return [await make()]

        async def plain(*results: Result) -> list[Result]:
            return list(results)

        jobs: list[Callable[[], Awaitable[list[Result]]]] = [
            lmstudio,
            partial(started, settings, env),
            partial(one, partial(check_port, settings, "listen", local)),
            partial(one, partial(check_port, settings, "admin_listen", local)),
            partial(plain, check_state_dir(settings), check_network(settings)),
            partial(one, partial(check_service, env, platform)),
            partial(plain, check_base_url(settings, env), check_attribution(settings, env),
                    check_auth(env)),
            partial(one, partial(check_claude, env)),
        ]
        slots: list[list[Result]] = [[] for _ in jobs]

        async def fill(i: int) -> None:
            try:
                slots[i] = await jobs[i]()
            except Exception as exc:  # a crash is a FAIL line, not an exception group
                slots[i] = [crashed(getattr(jobs[i], "__name__", "check"), exc)]

        async with trio.open_nursery() as nursery:
            for i in range(len(jobs)):
                nursery.start_soon(fill, i)
    return [r for slot in slots for r in slot]
