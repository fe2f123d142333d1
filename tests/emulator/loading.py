"""Loading models as LM Studio does: through its REST load API, or JIT on the first request
naming a downloaded model that is not loaded (``emu.jit``, off by default).

LM Studio's JIT load takes the model's default context (``emu.jit_context_length``, 4096)
and ``n_parallel`` 4, as its API loads do; auto-evict keeps one JIT-loaded model, so a JIT
load unloads the model JIT-loaded before it. Models loaded through the REST API (or
present at the start, as by ``lms load``) are never evicted. Both ways take
``emu.load_delay`` seconds (and wait for ``emu.load_gate``), so a benchmark compares them
fairly; ``emu.loads`` records every load that completed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import trio

from .validate import ApiError

if TYPE_CHECKING:
    from .models import ModelSpec
    from .state import Emulator

LoadedBy = Literal["rest", "jit"]
API_PARALLEL = 4  # LM Studio's n_parallel for models loaded by its API or JIT


@dataclass(frozen=True)
class Load:
    """One completed load: which model, at what context, how (REST API or JIT), when."""

    model: str
    context_length: int
    how: LoadedBy
    at: float


async def load(emu: Emulator, key: str, context_length: int | None, how: LoadedBy
               ) -> ModelSpec:
    """Load ``key`` after ``emu.load_delay`` seconds (and the gate); raise ApiError."""
    await trio.sleep(emu.load_delay)
    if emu.load_gate is not None:
        await emu.load_gate.wait()
    if emu.fail_loads:
        emu.fail_loads -= 1
        raise ApiError("Failed to load model: not enough memory", status=500,
                       code="model_load_failed")
    model = emu.load_model(key, context_length)
    model.loaded_by, model.parallel = how, API_PARALLEL
    emu.loads.append(Load(key, model.context_length, how, trio.current_time()))
    return model


async def jit_load(emu: Emulator, body: Any) -> None:
    """Before a generation request is planned: with JIT on, load the model ``body`` names
    if it is downloaded but not loaded (evicting the previous JIT-loaded model); requests
    that arrive meanwhile for it wait for the same load. Anything else is left for the
    request's own validation to answer."""
    key = body.get("model") if isinstance(body, dict) else None
    if not emu.jit or not isinstance(key, str):
        return
    pending = emu.jit_loading.get(key)
    if pending is not None:
        await pending.wait()
        return
    model = emu.models.get(key)
    if model is None or model.loaded:
        return
    done = emu.jit_loading[key] = trio.Event()
    try:
        for other in emu.models.values():  # auto-evict: one JIT model at a time
            if other.loaded and other.loaded_by == "jit":
                emu.unload_model(other.key)
        await load(emu, key, emu.jit_context_length, "jit")
    finally:
        del emu.jit_loading[key]
        done.set()
