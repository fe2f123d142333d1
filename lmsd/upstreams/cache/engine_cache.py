"""What lmsd sends an engine to keep a prefix: llama-server's slot save and restore
(``POST /slots/<id>?action=save|restore``, under ``--slot-save-path``), and a warm-up
(a conversation's last request for its prefill only). Each answers None on success, else
why it failed (the keeper reports it and carries on)."""

from __future__ import annotations

from typing import Any

import httpx

from ...protocol.warmup import warmup_body

SLOT_ACTION_TIMEOUT = 120.0  # a save writes the whole KV: gigabytes on a real model


async def slot_action(client: httpx.AsyncClient, index: int, action: str, file: str
                      ) -> str | None:
    try:
        answer = await client.post(f"/slots/{index}?action={action}",
                                   json={"filename": file}, timeout=SLOT_ACTION_TIMEOUT)
    except httpx.HTTPError as exc:
        return str(exc) or type(exc).__name__
    if answer.status_code != 200:
        return f"HTTP {answer.status_code}: {answer.text[:200]}"
    return None


async def warm_up(client: httpx.AsyncClient, path: str, body: dict[str, Any],
                  slot: int | None, timeout: float) -> str | None:
    """Send ``body`` (the last full request to ``path``) again for one token; on
    llama-server's chat endpoint into ``slot``."""
    sent = warmup_body(path, body)
    if slot is not None and path.endswith("/chat/completions"):
        sent["id_slot"] = slot
    try:
        answer = await client.post(path, json=sent, timeout=timeout)
    except httpx.HTTPError as exc:
        return str(exc) or type(exc).__name__
    if answer.status_code != 200:
        return f"HTTP {answer.status_code}: {answer.text[:200]}"
    return None
