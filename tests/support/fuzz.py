"""Hypothesis strategies shared by the fuzzers: arbitrary JSON, and a real Claude Code request
with any one field replaced."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from tests.support.fixtures import body

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20,
)
BASE = body("basic_json", 1)


def paths(value: Any, prefix: tuple = (), *, width: int = 3) -> list[tuple]:
    """Every place in ``value`` (a key or index path), the first ``width`` items of lists."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k), width=width)
    elif isinstance(value, list):
        for i, v in enumerate(value[:width]):
            out += paths(v, (*prefix, i), width=width)
    return out


PATHS = [p for p in paths(BASE) if p]


def mutate(doc: Any, path: tuple, value: Any) -> Any:
    doc = copy.deepcopy(doc)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc
