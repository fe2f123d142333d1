"""What an engine offers for keeping conversations' prefixes (``engine_watch.py`` asks
once, and again after the engine restarted): llama-server's slots, whether it can save them,
and whether idle slots keep their KV. Anything else (LM Studio, vLLM) offers none."""

from __future__ import annotations

import httpx

from .slots import SlotSetup


async def probe_slots(client: httpx.AsyncClient, *, write: bool = True
                      ) -> tuple[SlotSetup | None, list[int]]:
    """(the engine's slot setup or None when it has no slots to steer, the slots the
    probe wrote a prompt to: they no longer hold what they held). ``write=False``
    (``lmsd doctor``) changes nothing in the engine: whether idle slots keep their KV is
    then known only when two already do. Raises ``httpx.HTTPError`` when the engine does
    not answer (nothing learned)."""
    answer = await client.get("/props", timeout=5.0)
    try:
        props = answer.json() if answer.status_code == 200 else None
    except ValueError:
        return None, []
    if not isinstance(props, dict) or "total_slots" not in props:
        return None, []
    slots = int(props.get("total_slots") or 1)
    can_save = await _can_save(client)
    written: list[int] = []
    keeps_idle = await _keeps_idle(client, written, write) if slots > 1 else None
    if slots == 1:
        why = "one slot: every conversation shares it" + (
            "; saved and restored around each switch" if can_save else
            "; no --slot-save-path: a switch costs a re-prefill")
    elif keeps_idle:
        why = "idle slots keep their KV (per-slot KV): each conversation pinned"
    elif keeps_idle is None and not write:
        why = "whether idle slots keep their KV shows once two slots hold prompts"
    else:
        why = ("idle slots are cleared into the RAM cache when a task starts (unified KV): "
               "slot choice left to the engine; a conversation is parked in the RAM cache "
               "before a similar one runs") if keeps_idle is False else (
               "/slots is off: slot choice left to the engine")
    return SlotSetup(slots, keeps_idle, can_save, why), written


async def _can_save(client: httpx.AsyncClient) -> bool:
    """An empty file name: 400 "Invalid filename" where saving is on, 501 "does not
    support slots action" where it is off. Nothing is written either way."""
    try:
        answer = await client.post("/slots/0?action=save", json={"filename": ""},
                                   timeout=5.0)
    except httpx.HTTPError:
        return False
    return answer.status_code == 400


async def _keeps_idle(client: httpx.AsyncClient, written: list[int], write: bool
                      ) -> bool | None:
    """Does a task starting on one slot clear the idle ones (unified KV with
    ``--cache-idle-slots``)? Two idle slots holding prompts already say no. Else a
    one-token prompt goes to an empty slot (and, on a fresh engine, first to another
    one) and ``/slots`` shows whether the filled slot kept its prompt. Only empty slots
    are written (a cleared one went to the engine's RAM cache). None where ``/slots``
    is off."""
    async def held() -> list[int] | None:
        answer = await client.get("/slots", timeout=5.0)
        slots = answer.json() if answer.status_code == 200 else None
        if not isinstance(slots, list) or not all(isinstance(s, dict) for s in slots):
            return None
        return [int(s.get("n_prompt_tokens") or 0) for s in slots]

    async def fill(slot: int) -> None:
        written.append(slot)
        await client.post("/completion", json={
            "prompt": "lmsd slot probe", "n_predict": 1, "id_slot": slot,
            "cache_prompt": True}, timeout=30.0)

    try:
        tokens = await held()
        if tokens is None or len(tokens) < 2:
            return None
        filled = [i for i, n in enumerate(tokens) if n > 0]
        if len(filled) >= 2:
            return True
        if not write:
            return None
        empty = [i for i, n in enumerate(tokens) if n == 0]
        if not filled:
            await fill(empty[0])
            filled, empty = [empty[0]], empty[1:]
        await fill(empty[0])
        after = await held()
    except (httpx.HTTPError, ValueError):
        return None
    return after is not None and after[filled[0]] > 0
