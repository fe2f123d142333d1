"""Model-name mapping and the Anthropic ``GET /v1/models`` listing."""

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


def is_claude_name(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith(("claude", "anthropic")) or lowered in FAMILIES


def family(name: str) -> str | None:
    lowered = name.lower()
    return next((f for f in FAMILIES if f in lowered), None)


def map_model(
    requested: str, *, mapping: Mapping[str, str], default: str, loaded: Sequence[str]
) -> str | None:
    """The upstream model for a requested name, or None when nothing can serve it.

    Explicit mapping entries win (exact name, then family ``opus``/``sonnet``/``haiku``).
    Claude names (dated ids and ``[1m]`` suffixes included) go to ``default``, else to the
    first model LM Studio has loaded. Any other name passes through unchanged.
    """
    base = requested.removesuffix("[1m]")
    for key in (requested, base):
        if key in mapping:
            return mapping[key]
    if not is_claude_name(base):
        return requested
    fam = family(base)
    if fam and fam in mapping:
        return mapping[fam]
    if default:
        return default
    return loaded[0] if loaded else None


def models_page(
    upstream_models: Sequence[str],
    *,
    target: str | None,
    limit: int = 20,
    after_id: str | None = None,
    before_id: str | None = None,
) -> dict[str, Any]:
    """Anthropic's list shape: Claude aliases first, then the upstream's own models."""
    suffix = f" (local: {target})" if target else ""
    entries = [
        {"type": "model", "id": alias, "display_name": alias + suffix, "created_at": CREATED_AT}
        for alias in CLAUDE_ALIASES
    ]
    entries += [
        {"type": "model", "id": m, "display_name": m, "created_at": CREATED_AT}
        for m in upstream_models
        if m not in CLAUDE_ALIASES
    ]
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
