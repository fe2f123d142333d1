"""What can be served, where, and in what state: ``GET /models`` on the admin API,
``lmsd models``, the dashboard and ``/status`` read this one view."""

from __future__ import annotations

from typing import Any


def models_json(backends: list[Any]) -> dict[str, Any]:
    """Every model each upstream (``Backend``) can serve, loaded or not, one row per
    (upstream, model):

    ``name``, ``upstream``, ``loaded`` (bool), ``state`` (loaded, loading, unloading, not
    loaded, failed), ``memory_bytes`` (0: unknown), ``context_length``, ``idle_s`` (None
    while no request used it), ``in_flight``, ``group``, ``pinned``, ``ttl_s`` (0: never),
    ``by_lmsd`` (lmsd loaded it), ``loads`` and ``last_load_s``, ``started`` (lmsd runs its
    engine) with ``pid`` and ``url`` then; and each upstream's budget (``budget_bytes``,
    ``used_bytes``), where one is set."""
    rows: list[dict[str, Any]] = []
    budgets: list[dict[str, Any]] = []
    for backend in backends:
        if backend.pool is not None:
            rows += [_with_context(r, backend) for r in backend.pool.rows()
                     if r["upstream"] == backend.name]
            budget = backend.pool.budget_json()
            if budget is not None and budget not in budgets:
                budgets.append(budget)
        else:
            rows += _rows_without_pool(backend)
    return {"models": rows, "budgets": budgets}


def _with_context(row: dict[str, Any], backend: Any) -> dict[str, Any]:
    """A loaded row's context from its engine when its loader does not know it: a started
    llama-server lists none, the watcher reads its ``/props``. Its one model may be listed
    under another id (its file, an ``--alias``): a started backend serves only this one."""
    if row["context_length"] is not None or not row["loaded"]:
        return row
    contexts = backend.loaded_contexts()
    context = contexts.get(row["name"])
    if context is None and row.get("started") and len(set(contexts.values())) == 1:
        context = next(iter(contexts.values()))
    return {**row, "context_length": context} if context is not None else row


def _rows_without_pool(backend: Any) -> list[dict[str, Any]]:
    """An upstream lmsd loads nothing on: what it lists, and which are loaded."""
    contexts = backend.loaded_contexts()
    loaded = set(backend.loaded_now())
    names = list(backend.config.models or backend.upstream.known or loaded)
    names += [m for m in loaded if m not in names]
    return [{"name": m, "upstream": backend.name, "loaded": m in loaded,
             "state": "loaded" if m in loaded else "not loaded", "memory_bytes": 0,
             "context_length": contexts.get(m), "idle_s": None, "in_flight": 0,
             "group": "", "pinned": False, "ttl_s": 0.0, "by_lmsd": False, "loads": 0,
             "last_load_s": None, "started": False} for m in names]
