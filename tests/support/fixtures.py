"""Access to the captured Claude Code 2.1.329 and Codex CLI 0.171 requests in tests/fixtures/."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parents[1] / "fixtures"


@cache
def _run(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def requests(name: str, path: str = "/v1/messages") -> list[dict[str, Any]]:
    """The captured requests of one run to ``path``, in order (deep copies)."""
    return [copy.deepcopy(r) for r in _run(name)["requests"] if r["path"] == path]


def body(name: str, index: int = 0) -> dict[str, Any]:
    return requests(name)[index]["body"]


def headers(name: str, index: int = 0) -> dict[str, str]:
    return {k.lower(): v for k, v in requests(name)[index]["headers"]}


@cache
def _codex() -> dict[str, Any]:
    return json.loads((FIXTURES / "codex_0171.json").read_text(encoding="utf-8"))


def codex_request(run: str, seq: int) -> dict[str, Any]:
    """A captured Codex CLI 0.171 request (``headers`` as pairs, ``body``) of one capture
    run (tests/fixtures/codex_0171.json says which), as a deep copy."""
    for request in _codex()["requests"]:
        if request["run"] == run and request["seq"] == seq:
            return copy.deepcopy(request)
    raise KeyError(f"no captured Codex request {run}/{seq}")
