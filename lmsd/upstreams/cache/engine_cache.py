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
