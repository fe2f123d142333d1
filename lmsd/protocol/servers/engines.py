"""Which engine serves at an upstream URL, named as users know it, from what it answered.

Errors, ``/status`` and ``lmsd doctor`` name the server by what it is ("llama-server at
http://... has no model loaded: start it with a model"), not always "LM Studio". The
evidence is what lmsd reads anyway (no extra request, and no I/O here): LM Studio lists its
models at ``/api/v1/models`` or ``/api/v0/models``, answers ``/lmstudio-greeting`` and
names itself in its 401 ("An LM Studio API token is required ..."); llama-server's
``/props`` has ``default_generation_settings``; the ``owned_by`` of ``/v1/models`` rows is
``llamacpp`` (llama-server), ``vllm`` (vLLM), ``library`` (Ollama's pulled models) or
``me`` (llama-cpp-python's server, which serves one request at a time).
"""

from __future__ import annotations

from typing import Any

LM_STUDIO, LLAMA_SERVER, OLLAMA, VLLM = "LM Studio", "llama-server", "Ollama", "vLLM"
LLAMA_CPP_PYTHON = "llama-cpp-python's server"
#: An engine lmsd does not recognize (SGLang, a gateway).
UNKNOWN = "the upstream server"
_OWNED_BY = {"llamacpp": LLAMA_SERVER, "vllm": VLLM, "library": OLLAMA, "ollama": OLLAMA,
             "me": LLAMA_CPP_PYTHON}
#: Engines that serve one request at a time, and why that matters to lmsd.
_ONE_AT_A_TIME = {LLAMA_CPP_PYTHON: (
    "llama-cpp-python's server (its /v1/models says owned_by \"me\"): any other request "
    "interrupts or waits for the one it serves")}


def engine_of(*, greeting: bool = False, props: Any = None, listing: Any = None,
              said: str = "") -> str:
    """The engine's name from its greeting, its ``/props``, its ``/v1/models`` or its
    words (``said``: a refusal's message); UNKNOWN when none tells."""
    if greeting or "LM Studio" in said:
        return LM_STUDIO
    if isinstance(props, dict) and isinstance(props.get("default_generation_settings"), dict):
        return LLAMA_SERVER
    rows = listing.get("data") if isinstance(listing, dict) else None
    for row in rows if isinstance(rows, list) else ():
        owner = row.get("owned_by") if isinstance(row, dict) else None
        if isinstance(owner, str) and owner.lower() in _OWNED_BY:
            return _OWNED_BY[owner.lower()]
    return UNKNOWN


def one_at_a_time(engine: str) -> str | None:
    """Why ``engine`` (``engine_of``'s name) serves one request at a time, or None."""
    return _ONE_AT_A_TIME.get(engine)


def slot_context(props: Any) -> int | None:
    """The context each llama-server slot holds: its ``/props``
    ``default_generation_settings.n_ctx`` (a slot's, not the whole ``-c`` when ``-np`` is
    above 1; capped by the model's training context). None when ``props`` is not that."""
    settings = props.get("default_generation_settings") if isinstance(props, dict) else None
    n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    if isinstance(n_ctx, int) and not isinstance(n_ctx, bool) and n_ctx > 0:
        return n_ctx
    return None
