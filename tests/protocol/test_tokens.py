"""The prompt estimate (``protocol/tokens.py``): ``json_chars`` counts a value's JSON as
``json.dumps(..., ensure_ascii=False)`` writes it, whatever its text holds."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from lmsd.protocol.tokens import TOOL_OVERHEAD, estimate_tokens, json_chars, text_tokens

#: Text that is hard to count from an ASCII dump: non-ASCII (BMP and astral), control
#: characters, backslashes and text that reads like an escape.
TRICKY = st.lists(st.sampled_from(
    ["a", "é", "—", "😀", "\n", "\x01", "\\", "u", "00e9", '"', "\u2028", "ud83d", "\x7f"]),
    max_size=8).map("".join)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TRICKY,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY, inner, max_size=4),
    max_leaves=12)


@given(VALUES)
def test_json_chars_is_the_length_of_the_unescaped_dump(value):
    assert json_chars(value) == len(json.dumps(value, ensure_ascii=False))


def test_a_tool_is_estimated_from_its_json_as_written():
    tool = {"name": "Edit", "description": "Replace — exactly 😀 \\u00e9 once",
            "input_schema": {"type": "object"}}
    written = json.dumps(tool, ensure_ascii=False)
    assert estimate_tokens(None, [], [tool]) == TOOL_OVERHEAD + text_tokens(written)
