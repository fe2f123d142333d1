"""LM Studio's model listings, read the same way everywhere (proxy, watcher, doctor).

Pure functions over decoded JSON: ``GET /api/v1/models`` (LM Studio 0.4+, loaded
instances with their context), ``GET /api/v0/models`` (older, one row per model and
state), ``GET /v1/models`` (any OpenAI-compatible server, no context information) and
``lms ps --json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

V1, V0, OPENAI = "/api/v1/models", "/api/v0/models", "/v1/models"


@dataclass
class LoadedModel:
    key: str
    instance_id: str
    context_length: int | None
    max_context_length: int | None
    state: str = "loaded"  # "loaded" | "reloading"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelList:
    loaded: list[LoadedModel] = field(default_factory=list)
    known: list[str] = field(default_factory=list)  # every LLM the server can serve
    #: each listed model's largest context (LM Studio's listings), loaded or not
    max_contexts: dict[str, int] = field(default_factory=dict)
    #: each listed model's size on disk (LM Studio's ``size_bytes``): about what it takes
    sizes: dict[str, int] = field(default_factory=dict)


def _rows(data: Any, key: str) -> list[dict[str, Any]] | None:
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        return None
    return [row for row in data[key] if isinstance(row, dict)]


def _max_contexts(rows: list[dict[str, Any]], key: str) -> dict[str, int]:
    return {m[key]: m["max_context_length"] for m in rows
            if isinstance(m.get("max_context_length"), int)}


def parse_models(path: str, data: Any) -> ModelList | None:
    """The models in a listing from ``path``; None when ``data`` is not that listing."""
    if path == V1:
        rows = _rows(data, "models")
        if rows is None:
            return None
        llms = [m for m in rows if m.get("type", "llm") == "llm" and isinstance(m.get("key"),
                                                                                 str)]
        return ModelList(
            [LoadedModel(m["key"], inst.get("id") or m["key"],
                         (inst.get("config") or {}).get("context_length"),
                         m.get("max_context_length"))
             for m in llms for inst in m.get("loaded_instances") or ()
             if isinstance(inst, dict)],
            [m["key"] for m in llms], _max_contexts(llms, "key"),
            {m["key"]: m["size_bytes"] for m in llms if isinstance(m.get("size_bytes"), int)
             and not isinstance(m.get("size_bytes"), bool)})
    rows = _rows(data, "data")
    if rows is None:
        return None
    rows = [m for m in rows if isinstance(m.get("id"), str)]
    if path == V0:  # may list a loaded and a not-loaded row for the same id
        rows = [m for m in rows if m.get("type", "llm") in ("llm", "vlm")]
        loaded = {m["id"]: LoadedModel(m["id"], m["id"], m.get("loaded_context_length"),
                                       m.get("max_context_length"))
                  for m in rows if m.get("state") == "loaded"}
        return ModelList(list(loaded.values()), list(dict.fromkeys(m["id"] for m in rows)),
                         _max_contexts(rows, "id"))
    ids = list(dict.fromkeys(m["id"] for m in rows))  # OpenAI: every listed model serves
    return ModelList([LoadedModel(i, i, None, None) for i in ids], ids)


def models_from_lms_ps(rows: list[dict[str, Any]]) -> ModelList:
    """``lms ps --json`` rows (LLM entries only)."""
    loaded = [LoadedModel(r.get("modelKey") or r["identifier"], r["identifier"],
                          r.get("contextLength"), r.get("maxContextLength"))
              for r in rows if isinstance(r, dict) and r.get("type", "llm") == "llm"
              and isinstance(r.get("identifier"), str)]
    return ModelList(loaded, [m.key for m in loaded])
