"""Model-name mapping and the ``GET /v1/models`` listing, in a shape both SDKs parse."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

FAMILIES = ("opus", "sonnet", "haiku")
#: Names advertised to Claude Code (its model picker keeps only ids starting with "claude").
CLAUDE_ALIASES = (
    "claude-opus-5-5",
    "claude-opus-4-7",
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
)
CREATED_AT = "2025-01-01T00:00:00Z"
CREATED = 1735689600  # CREATED_AT in seconds, as OpenAI clients read it
OWNED_BY = "lmsd"


def is_claude_name(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith(("claude", "anthropic")) or lowered in FAMILIES


def family(name: str) -> str | None:
    lowered = name.lower()
    return next((f for f in FAMILIES if f in lowered), None)


#: The name for "whatever model is loaded", on every front.
LOCAL_ALIAS = "local-model"


def map_model(
    requested: str, *, mapping: Mapping[str, str], default: str, loaded: Sequence[str]
) -> str | None:
    """The upstream model for a requested name, or None when nothing can serve it.

    Explicit mapping entries win (exact name, then family ``opus``/``sonnet``/``haiku``).
    Claude names (dated ids and ``[1m]`` suffixes included) and ``local-model`` (what
    ``lmsd env --codex`` names when it knows no model) go to ``default``, else to the
    first model LM Studio has loaded, on every front. Any other name passes through.
    """
    base = requested.removesuffix("[1m]")
    for key in (requested, base):
        if key in mapping:
            return mapping[key]
    if not is_claude_name(base) and base != LOCAL_ALIAS:
        return requested
    fam = family(base)
    if fam and fam in mapping:
        return mapping[fam]
    if default:
        return default
    return loaded[0] if loaded else None


def model_entry(model_id: str, display_name: str, context: int | None) -> dict[str, Any]:
    """One model object; with the loaded context when known.

    ``context_window`` and ``runtime.max_input_tokens`` are the fields clients read for a
    model's window. Claude Code 2.1.329 reads neither from a gateway (its discovery keeps
    ids and names only): ``lmsd env`` sizes its compaction instead.
    """
    entry: dict[str, Any] = {"type": "model", "id": model_id, "display_name": display_name,
                             "created_at": CREATED_AT}
    if context:
        entry["context_window"] = context
        entry["runtime"] = {"max_input_tokens": context}
    return entry


def claude_entry(name: str, target: str | None, context: int | None) -> dict[str, Any]:
    """A Claude name lmsd answers to; its display name says which local model serves it."""
    return model_entry(name, f"{name} (local: {target})" if target else name, context)


def model_entries(
    upstream_models: Sequence[str],
    *,
    target: str | None,
    contexts: Mapping[str, int] | None = None,
    loaded: Mapping[str, bool] | None = None,
) -> list[dict[str, Any]]:
    """Claude aliases first, then the upstream's own models; ``contexts`` maps an id to the
    context of the model serving it, ``loaded`` to whether that model is loaded now (an
    extra ``loaded`` field: a downloaded model that is not is loaded on request)."""
    contexts, loaded = contexts or {}, loaded or {}
    entries = [claude_entry(alias, target, contexts.get(alias)) for alias in CLAUDE_ALIASES]
    entries += [model_entry(m, m, contexts.get(m))
                for m in upstream_models if m not in CLAUDE_ALIASES]
    for entry in entries:
        if entry["id"] in loaded:
            entry["loaded"] = loaded[entry["id"]]
    return entries


def models_page(
    upstream_models: Sequence[str],
    *,
    target: str | None,
    contexts: Mapping[str, int] | None = None,
    loaded: Mapping[str, bool] | None = None,
    limit: int = 20,
    after_id: str | None = None,
    before_id: str | None = None,
) -> dict[str, Any]:
    """Anthropic's list shape: Claude aliases first, then the upstream's own models."""
    entries = model_entries(upstream_models, target=target, contexts=contexts, loaded=loaded)
    ids = [e["id"] for e in entries]
    start, end = 0, len(entries)
    if after_id in ids:
        start = ids.index(after_id) + 1
    if before_id in ids:
        end = ids.index(before_id)
        start = max(start, end - limit) if after_id is None else start
    page = entries[start:end][:limit]
    return {
        "data": page,
        "has_more": start + len(page) < end,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }


def openai_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A model object with OpenAI's fields beside Anthropic's (each SDK ignores the
    other's)."""
    return {**entry, "object": "model", "created": CREATED, "owned_by": OWNED_BY}


def openai_listing(page: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic models page that OpenAI clients (the openai SDK, Codex ``--oss``)
    also read: ``object: "list"`` and OpenAI's fields on every entry."""
    return {"object": "list", **page, "data": [openai_entry(e) for e in page["data"]]}


def served_contexts(
    ids: Sequence[str], *, contexts: Mapping[str, int], loaded: Sequence[str],
    mapping: Mapping[str, str], default: str,
) -> dict[str, int]:
    """The loaded context behind each id lmsd answers to (that of the model it maps to).

    ``contexts`` maps a loaded model's key and instance id to its context length; ``loaded``
    lists the loaded instances as :func:`map_model` takes them. Ids no loaded model serves
    are left out.
    """
    found = {}
    for model_id in ids:
        target = map_model(model_id, mapping=mapping, default=default, loaded=loaded)
        if target is not None and target in contexts:
            found[model_id] = contexts[target]
    return found


def served_loaded(
    ids: Sequence[str], *, loaded: Sequence[str], mapping: Mapping[str, str], default: str,
) -> dict[str, bool]:
    """Whether the model behind each id lmsd answers to is loaded now (``loaded``: the
    loaded instance ids and model keys). Ids that map to nothing are left out."""
    found = {}
    for model_id in ids:
        target = map_model(model_id, mapping=mapping, default=default, loaded=loaded)
        if target is not None:
            found[model_id] = target in loaded
    return found
