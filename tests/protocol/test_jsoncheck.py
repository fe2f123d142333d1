"""What a request body may not hold (``protocol/jsoncheck.py``): the cheap looks that skip
the full walk must never skip a body the walk would refuse."""

from __future__ import annotations

import itertools
import json

import pytest

from lmsd.protocol.jsoncheck import MAX_DEPTH, _may_hold_surrogate, problem

#: Pieces of JSON string text: surrogate halves (either case), escaped backslashes, text
#: that looks like an escape after a backslash, a quote.
PIECES = ('\\ud83d', '\\ude00', '\\uD83D', '\\uDE00', '\\\\', 'a', 'u', 'd83d', '\\"',
          '\\u0041')


def _text(pieces: tuple[str, ...]) -> bytes:
    return ('{"s": "' + "".join(pieces) + '"}').encode()


def test_every_lone_surrogate_in_short_strings_is_found():
    checked = refused = 0
    for n in range(1, 5):
        for pieces in itertools.product(PIECES, repeat=n):
            raw = _text(pieces)
            value = json.loads(raw)
            lone = any(0xD800 <= ord(c) <= 0xDFFF for c in value["s"])
            assert (problem(raw, value) is not None) == lone, raw
            checked += 1
            refused += lone
    assert checked > 10_000 and 0 < refused < checked


@pytest.mark.parametrize("raw, lone", [
    (rb'"\ud83d\ude00"', False),  # an emoji, escaped: no walk
    (rb'"\ud83d"', True),
    (rb'"\ude00\ud83d"', True),  # the halves in the wrong order
    (rb'"\\\ud83d\ude00"', False),  # an escaped backslash, then an emoji
    (rb'"\\ud83d\ude00"', True),  # text "\ud83d", then a lone low half
    (rb'"\ud83d\\\ude00"', True),  # a backslash between the halves
    (b'"\xed\xa0\xbd"', True),  # a surrogate encoded in UTF-8
])
def test_the_cheap_look_at_the_raw_text(raw: bytes, lone: bool):
    assert _may_hold_surrogate(raw) == lone
    assert (problem(raw, json.loads(raw)) is not None) == lone


def test_depth_is_refused_at_the_limit_however_many_brackets():
    wide = {"a": [[{"b": i}] for i in range(200)]}  # many brackets, shallow
    raw = json.dumps(wide).encode()
    assert problem(raw, wide) is None
    for depth, refused in ((MAX_DEPTH - 1, False), (MAX_DEPTH, True)):
        deep: object = []
        for _ in range(depth):
            deep = [deep]
        raw = json.dumps(deep).encode()
        found = problem(raw, deep)
        assert (found is not None) == refused
        if refused:
            assert found is not None and "nested too deeply" in found
