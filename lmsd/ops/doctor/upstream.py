"""``lmsd doctor``'s checks of the upstream: where LM Studio is, which API lmsd speaks to
it (decided as the daemon decides it), and the loaded models and their context."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from ...config import Settings, env_name
from ...protocol.failures import Failure, UpstreamAuth
from ...protocol.servers.auth import REFUSED_STATUSES, TOKENS_WHERE, key_refused_answer
from ...protocol.servers.engines import LM_STUDIO, UNKNOWN, engine_of, slot_context
from ...protocol.servers.lmstudio import OPENAI, V0, V1, ModelList, parse_models
from ...protocol.urls import display_url, scrub
from ...upstreams.cache.slot_probe import probe_slots
from ...upstreams.dialect import CONFIGURED, UNDECIDED, decide
from ...upstreams.discovery import Found, discover, probe
from ...upstreams.lms import LmsCli
from .result import FAIL, HTTP_TIMEOUT, OK, SKIP, WARN, Result

LMS_TIMEOUT = 5.0


# -- LM Studio and its models ---------------------------------------------------------------


async def check_lmstudio(settings: Settings, environ: Mapping[str, str],
                         client: httpx.AsyncClient) -> tuple[Result, Found]:
    """Where LM Studio is, how it was found, and whether it answers."""
    home = Path(environ["HOME"]) if environ.get("HOME") else None
    lms = LmsCli(timeout=LMS_TIMEOUT, env=environ)
    found = await discover(settings.upstream, client=client, lms=lms, home=home)
    engine = LM_STUDIO if found.source != "config" else UNKNOWN
    if found.reachable:
        engine, _, _ = await identify(client, found.url, settings.upstream_api_key)
    where = f"{engine} at {display_url(found.url)} (found by: {found.source})"
    if found.reachable:
        return Result("lmstudio", OK, f"{where} answers"), found
    if found.source == "config":
        fix = (f"start the server there (LM Studio: `lms server start`), or correct "
               f"upstream (now {display_url(settings.upstream)})")
    else:
        fix = ("start LM Studio's server: `lms server start`, or set upstream = URL "
               f"({env_name('upstream')} or --upstream)")
    return Result("lmstudio", FAIL, f"{where} is not reachable", fix), found


async def identify(client: httpx.AsyncClient, url: str, api_key: str
                   ) -> tuple[str, Any, Any]:
    """(the engine at ``url``, its ``/props``, its ``/v1/models``) as the daemon names it
    (``protocol/servers/engines.py``); what did not answer is None."""
    if await probe(client, url):
        return LM_STUDIO, None, None
    answers: list[Any] = []
    for path in ("/props", "/v1/models"):
        try:
            answers.append(await _get_json(client, f"{url}{path}", api_key))
        except (httpx.HTTPError, ValueError, Failure):
            answers.append(None)
    props, listing = answers
    return engine_of(props=props, listing=listing), props, listing


def check_notes(settings: Settings) -> list[Result]:
    """What loading the settings corrected (an upstream URL ending in /v1, say)."""
    return [Result("config", WARN, note, f"set {key} = {display_url(getattr(settings, key))!r}"
                   if key == "upstream" else f"set {key} = {getattr(settings, key)!r}")
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


async def read_models(client: httpx.AsyncClient, url: str, api_key: str) -> ModelList | None:
    """LM Studio's loaded LLMs and every LLM it has, read as the watcher reads them."""
    for path in (V1, V0):
        listing = parse_models(path, await _get_json(client, f"{url}{path}", api_key))
        if listing is not None:
            return listing
    return None


async def check_api(settings: Settings, found: Found, client: httpx.AsyncClient) -> Result:
    """Which API lmsd speaks to the upstream, and why (decided as the daemon decides)."""
    if settings.upstream_api == "auto" and not found.reachable:
        return Result("api", SKIP, UNDECIDED)
    decided = await decide(client, found.url, settings.upstream_api)
    if decided is None:
        return Result("api", SKIP, UNDECIDED)
    kind, why = decided
    if why == CONFIGURED:
        return Result("api", OK, f"{kind.name} (configured: upstream_api)")
    return Result("api", OK, f"{kind.summary} ({why})")


async def check_cache(settings: Settings, found: Found, learned: str | None = None
                      ) -> Result:
    """What lmsd can do to keep conversations' prefixes in this engine's cache
    (``keep_warm``), read without changing anything in the engine. ``learned``: what the
    running daemon found its restores do (``keeper.py``'s ``restore``), said after."""
    if not settings.keep_warm:
        return Result("cache", SKIP, "keep_warm is off")
    if not found.reachable:
        return Result("cache", SKIP, "the upstream does not answer")
    headers = {"Authorization": f"Bearer {settings.upstream_api_key}"} \
        if settings.upstream_api_key else {}
    try:
        async with httpx.AsyncClient(base_url=found.url, headers=headers,
                                     timeout=HTTP_TIMEOUT) as client:
            setup, _ = await probe_slots(client, write=False)
    except httpx.HTTPError as exc:
        return Result("cache", SKIP, f"could not ask the engine: {scrub(str(exc))}")
    if setup is None:
        return Result("cache", OK, "no slots to steer: lmsd re-warms the most recent "
                      "conversations after a reload or restart")
    if setup.slots == 1 and not setup.can_save:
        return Result("cache", WARN, f"llama-server with one slot and no --slot-save-path: "
                      f"a title, a subagent or a second session costs the main "
                      f"conversation a re-prefill ({setup.why})",
                      "start llama-server with --slot-save-path DIR/ (lmsd saves and "
                      "restores slots) or -np 2 (lmsd pins each conversation)")
    saving = "slots saved and restored" if setup.can_save else "no --slot-save-path"
    detail = f"llama-server, {setup.slots} slot(s), {saving}: {setup.why}"
    if not setup.can_save:  # llama-server's defaults: -np auto, unified KV, RAM cache
        return Result("cache", WARN, f"{detail}; the RAM cache dies with the engine, so "
                      "after an engine restart every conversation is prefilled again",
                      "add --slot-save-path DIR/ to llama-server's command line: lmsd saves "
                      "the last conversation's slot when another one runs and restores it "
                      "after a restart (docs/cache.md: the day trace on the engine's "
                      "defaults)")
    if learned and "replay instead" in learned:
        return Result("cache", WARN, f"{detail}; but the running daemon found that {learned}",
                      "nothing to do: lmsd replays instead (a sliding-window or hybrid "
                      "model: llama.cpp keeps no context checkpoint across a restore)")
    return Result("cache", OK, detail + (f"; {learned}" if learned else ""))


async def check_models(settings: Settings, found: Found, client: httpx.AsyncClient) -> Result:
    """A model is loaded, with at least ``min_context`` tokens of context."""
    if not found.reachable:
        return Result("model", SKIP, "not checked: LM Studio is not reachable")
    minimum = settings.min_context
    try:
        listed = await read_models(client, found.url, settings.upstream_api_key)
    except UpstreamAuth as exc:  # LM Studio's "Require Authentication"
        return Result("api_key", FAIL, exc.message, f"make a token in {TOKENS_WHERE}")
    except (httpx.HTTPError, ValueError) as exc:
        return Result("model", WARN, f"could not read the models from "
                      f"{display_url(found.url)}: {scrub(str(exc)) or type(exc).__name__}",
                      "check that upstream is LM Studio")
    if listed is None:
        return await _check_other_models(settings, found, client)
    loaded, known = listed.loaded, listed.known
    if not loaded:
        model = known[0] if known else "<model>"
        return Result("model", FAIL, f"no model is loaded in LM Studio at "
                      f"{display_url(found.url)}",
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



async def _check_other_models(settings: Settings, found: Found, client: httpx.AsyncClient
                              ) -> Result:
    """Not LM Studio: the models ``/v1/models`` lists, and llama-server's slot context
    (its ``/props``), which lmsd cannot raise as it raises LM Studio's."""
    engine, props, listing = await identify(client, found.url, settings.upstream_api_key)
    models = parse_models(OPENAI, listing)
    if models is None or not models.loaded:
        return Result("model", FAIL, f"{engine} at {found.url} lists no model",
                      "start the server with a model")
    names = ", ".join(m.key for m in models.loaded)
    slot, minimum = slot_context(props), settings.min_context
    if slot is None:
        return Result("model", OK, f"{engine} serves {names} (its context is not listed: "
                      f"lmsd learns it from the first overflow)")
    detail = f"{engine} serves {names} with {slot} tokens of context per slot"
    if slot >= minimum:
        return Result("model", OK, detail)
    return Result("model", WARN, f"{detail}, below min_context {minimum} (Claude Code sends "
                  f"about 20K tokens before the user says anything)",
                  f"restart {engine} with a larger context (llama-server: -c {minimum} per "
                  f"slot times -np), or a model trained for more")
