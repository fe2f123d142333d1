"""Property tests: any chunking of the same output gives the same client-visible result."""

from __future__ import annotations

import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from lmsd.protocol.pivot import Event, Finished, TextDelta, TextDone
from lmsd.protocol.repair import ToolCallRepair

from .corpus import CALLS, NEGATIVES, POSITIVES, TOOLS, harmony, hermes, lfm, qwen
from .test_corpus import visible

SAMPLES = [p[1] for p in POSITIVES] + [n[1] for n in NEGATIVES]
FRAGMENTS = [
    "<", ">", "[", "]", "{", "}", "`", "```", "\n", " ", "ls", "Bash", "Delete", '"',
    "<tool_call>", "</tool_call>", "<function=Bash>", "<function=", "</function>",
    "<parameter=command>", "</parameter>", "[TOOL_REQUEST]", "[END_TOOL_REQUEST]",
    "<|channel|>", "<|message|>", "<|call|>", "<|tool_call_start|>", "<|tool_call_end|>",
    '<invoke name="Bash">', "</invoke>", "<think>", "</think>", '{"name": "Bash", ',
    '"arguments": {"command": "ls"}}', qwen(*CALLS[0]), hermes(*CALLS[1]),
    harmony(*CALLS[0]), lfm(CALLS[4]), "prose with words ", "ü世",
]


def stream(text: str, cuts: list[int]) -> list[Event]:
    repair = ToolCallRepair(TOOLS)
    out: list[Event] = []
    bounds = [0, *sorted({c % (len(text) + 1) for c in cuts}), len(text)]
    for a, b in itertools.pairwise(bounds):
        if b > a:
            out += repair.feed(TextDelta("t", text[a:b]))
    out += repair.feed(TextDone("t"))
    out += repair.feed(Finished("end"))
    return out


def check(text: str, cuts: list[int]) -> None:
    whole = visible(stream(text, []))
    assert visible(stream(text, cuts)) == whole
    if not any(isinstance(v, tuple) for v in whole):
        assert "".join(v for v in whole if isinstance(v, str)) == text


def test_every_single_split_point() -> None:
    for text in SAMPLES[::4]:
        for k in range(len(text) + 1):
            check(text, [k])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SAMPLES), st.lists(st.integers(min_value=0, max_value=4000), max_size=40))
def test_corpus_any_chunking(text: str, cuts: list[int]) -> None:
    check(text, cuts)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=25),
       st.lists(st.integers(min_value=0, max_value=4000), max_size=30))
def test_random_markup_any_chunking(fragments: list[str], cuts: list[int]) -> None:
    check("".join(fragments), cuts)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="<>[]{}`|=/\"ab \n", max_size=80),
       st.lists(st.integers(min_value=0, max_value=200), max_size=20))
def test_random_text_is_kept(text: str, cuts: list[int]) -> None:
    check(text, cuts)


def test_nothing_lost_or_duplicated_around_calls() -> None:
    text = "a" + qwen(*CALLS[0]) + "b" + hermes(*CALLS[1]) + "c"
    for k in range(len(text) + 1):
        seen = visible(stream(text, [k, k * 7]))
        texts = [v for v in seen if isinstance(v, str)]
        assert texts == ["a", "b", "c"]
        assert [json.dumps(v[1]) for v in seen if isinstance(v, tuple) and v[0] == "args"] == [
            json.dumps(CALLS[0][1]), json.dumps(CALLS[1][1])]
