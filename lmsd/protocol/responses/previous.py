"""``previous_response_id`` from a generic Responses client (the openai SDK, ``store``
defaulting to true): the client sends only the new items and names the answer they
follow. lmsd kept each answer it returned (``sessions/responses.py``); here, with no I/O,
the request is made the whole conversation again, as Codex sends it, so that the plan
and lmsd's own chaining to the upstream treat both clients alike.

OpenAI's semantics: the previous response's input and output items carry over;
``instructions`` and ``tools`` do not (a request gives its own, or none).
"""

from __future__ import annotations

from typing import Any

from ..failures import invalid

Items = list[dict[str, Any]]


def previous_id(body: Any) -> str | None:
    """The ``previous_response_id`` a body names (None: none), checked."""
    if not isinstance(body, dict) or body.get("previous_response_id") is None:
        return None
    value = body["previous_response_id"]
    if not isinstance(value, str) or not value:
        raise invalid("previous_response_id: expected a non-empty string (a response id "
                      "lmsd returned)")
    return value


def stores(body: Any) -> bool:
    """Whether the answer to ``body`` is kept for a later ``previous_response_id``
    (``store`` is true unless the client says false, as OpenAI's default)."""
    value = body.get("store") if isinstance(body, dict) else None
    if value is not None and not isinstance(value, bool):
        raise invalid("store: expected a boolean")
    return value is not False


def input_items(body: Any) -> Items:
    """The body's own input as items (a string input is one user message); what the
    store keeps for the request. Anything else is left for ``parse_request`` to refuse."""
    raw = body.get("input") if isinstance(body, dict) else None
    if isinstance(raw, str):
        return [{"type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": raw}]}]
    return list(raw) if isinstance(raw, list) else []


def expanded(body: dict[str, Any], history: Items) -> dict[str, Any]:
    """``body`` with ``history`` (the earlier items: inputs and answers) before its own
    input, and no ``previous_response_id`` left: a request with the whole history."""
    if not isinstance(body.get("input"), (str, list)):
        return body  # parse_request names the problem
    out = {k: v for k, v in body.items() if k != "previous_response_id"}
    out["input"] = [*history, *input_items(body)]
    return out
