"""Thin HTTP samples of the overflow matrix: every wording in every shape is pure logic
(tests/protocol/test_overflow_matrix.py); through lmsd, each wording and each transport
appears at least once, so the wiring stays tested without the full product."""

from __future__ import annotations

from typing import Any

import pytest


def sample(*cases: tuple[Any, ...]) -> list[Any]:
    """(wording, transport[, streamed]) cases as pytest params with readable ids."""
    return [pytest.param(*case, id="-".join(
        ("stream" if v else "plain") if isinstance(v, bool) else str(v) for v in case))
        for case in cases]


def values(params: list[Any]) -> list[tuple[Any, ...]]:
    """The cases of a sample, as tuples."""
    return [tuple(p.values) for p in params]
