"""What lmsd sends an engine to keep a prefix: llama-server's slot save and restore
(``POST /slots/<id>?action=save|restore``, under ``--slot-save-path``), and a warm-up
(a conversation's last request for its prefill only). Each says why it failed, or None
(the keeper reports it and carries on)."""

from __future__ import annotations

from typing import Any

import httpx

from ...protocol.warmup import warmup_body

SLOT_ACTION_TIMEOUT = 120.0  # a save writes the whole KV: gigabytes on a real model


async def slot_action(client: httpx.AsyncClient, index: int, action: str, file: str
                      ) -> tuple[str | None, dict[str, Any]]:
    """(why it failed or None, what the engine reported: tokens, bytes, milliseconds)."""
    try:
        answer = await client.post(f"/slots/{index}?action={action}",
                                   json={"filename": file}, timeout=SLOT_ACTION_TIMEOUT)
    except httpx.HTTPError as exc:
        return str(exc) or type(exc).__name__, {}
    if answer.status_code != 200:
        return f"HTTP {answer.status_code}: {answer.text[:200]}", {}
    try:
        data = answer.json()
    except ValueError:
        data = {}
    return None, _figures(data if isinstance(data, dict) else {})


def _figures(data: dict[str, Any]) -> dict[str, Any]:
    """llama-server's answer to a save or restore, as event fields."""
    timings = data.get("timings") if isinstance(data.get("timings"), dict) else {}
    out = {"tokens": data.get("n_saved", data.get("n_restored")),
           "bytes": data.get("n_written", data.get("n_read")),
           "ms": timings.get("save_ms", timings.get("restore_ms"))}
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in out.items()
            if isinstance(v, int | float)}


async def warm_up(client: httpx.AsyncClient, path: str, body: dict[str, Any],
                  slot: int | None, timeout: float) -> tuple[str | None, dict[str, int]]:
    """Send ``body`` (the last full request to ``path``) again for one token; on
    llama-server's chat endpoint into ``slot``. (Why it failed or None, what the engine
    prefilled and reused where it says: llama-server's ``timings``.)"""
    sent = warmup_body(path, body)
    if slot is not None and path.endswith("/chat/completions"):
        sent["id_slot"] = slot
    try:
        answer = await client.post(path, json=sent, timeout=timeout)
    except httpx.HTTPError as exc:
        return str(exc) or type(exc).__name__, {}
    if answer.status_code != 200:
        return f"HTTP {answer.status_code}: {answer.text[:200]}", {}
    try:
        data = answer.json()
    except ValueError:
        return None, {}
    timings = data.get("timings") if isinstance(data, dict) else None
    if not isinstance(timings, dict) or not isinstance(timings.get("prompt_n"), int):
        return None, {}
    return None, {"prefilled_tokens": timings["prompt_n"],
                  "cached_tokens": int(timings.get("cache_n") or 0)}


#: What ``park`` sends: a prompt that shares at most the first token with a real one.
PARK_PROMPT = "lmsd park"


async def park(client: httpx.AsyncClient) -> str | None:
    """On llama-server with unified KV and its RAM cache (``-np`` auto, the default): move
    the prompt its last request left on a slot into the RAM cache, so that the next
    request loads its own best match from there. Why it is needed: a request picks the
    slot whose prompt it shares most with, and when that keeps at least half of the
    slot's prompt the engine does not look in its RAM cache at all
    (``get_available_slot``'s ``f_keep < 0.5``): a second Claude Code session shares the
    system prompt and tools with the first, so the first's next turn reuses the second's
    slot and prefills everything after their common start again, while its own state sits
    in the RAM cache. A one-token prompt takes that slot (or another, and the idle ones are
    cleared into the cache as it starts); it shares too little with a real request to be
    chosen again. Why it failed, or None."""
    try:
        answer = await client.post("/completion", json={
            "prompt": PARK_PROMPT, "n_predict": 1, "cache_prompt": True,
            "temperature": 0}, timeout=SLOT_ACTION_TIMEOUT)
    except httpx.HTTPError as exc:
        return str(exc) or type(exc).__name__
    return None if answer.status_code == 200 else \
        f"HTTP {answer.status_code}: {answer.text[:200]}"


async def occupied_slot(client: httpx.AsyncClient, *, empty: bool = False
                        ) -> tuple[int | None, str]:
    """The idle slot holding the prompt of the engine's last request (the highest
    ``id_task`` among idle slots holding a prompt); ``empty``: an idle slot holding
    none. On unified KV only the last request's slot keeps its prompt (the others are
    cleared into the RAM cache when a task starts). With None, why none was found (in
    the engine's words where it gave some)."""
    try:
        answer = await client.get("/slots", timeout=5.0)
        slots = answer.json() if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        return None, f"GET /slots failed: {exc!r}"
    if not isinstance(slots, list):
        return None, f"GET /slots answered {answer.status_code}: {answer.text[:200]!r}"
    idle = [s for s in slots if isinstance(s, dict) and not s.get("is_processing")
            and isinstance(s.get("id"), int)]
    if empty:
        free = [s["id"] for s in idle if not s.get("n_prompt_tokens")]
        return (free[0], "") if free else (None, f"no idle slot is empty ({_shown(slots)})")
    held = [s for s in idle if s.get("n_prompt_tokens")]
    if not held:
        return None, f"no idle slot holds a prompt ({_shown(slots)})"
    return max(held, key=lambda s: s.get("id_task") if isinstance(s.get("id_task"), int)
               else -1)["id"], ""


def _shown(slots: list[Any]) -> str:
    """Each slot as the engine showed it: id, busy or idle, prompt tokens, last task."""
    return ", ".join(
        f"slot {s.get('id')}: {'busy' if s.get('is_processing') else 'idle'}, "
        f"{s.get('n_prompt_tokens', 0)} tokens, task {s.get('id_task')}"
        for s in slots[:16] if isinstance(s, dict)) or "none listed"
