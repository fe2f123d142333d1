"""gpt-oss harmony leaking into content:
``<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{...}<|call|>``
(vllm PR #32633, mlx-lm PR #1867). A header without ``to=functions.`` (the analysis or
final channel) is refuted as soon as its ``<|message|>`` shows, so it is not held."""

from __future__ import annotations

import re

from .base import NAME_LIMIT, Match, Result, Tools, loads, wait
from .schema import conform

NAME = "harmony"
OPENERS = ("<|channel|>", "<|start|>")

_MESSAGE = "<|message|>"
_TO = re.compile(r"to=functions\.([\w.\-]+)")
_ENDS = ("<|call|>", "<|end|>")


def parse(text: str, final: bool, tools: Tools) -> Result:
    at = text.find(_MESSAGE, 0, NAME_LIMIT)  # only a short header: a decision that stays
    if at < 0:
        return None if len(text) >= NAME_LIMIT else wait(final)
    header = text[:at]
    found = _TO.search(header)
    if found is None or "\n" in header.strip() or found[1] not in tools:
        return None
    body = at + len(_MESSAGE)
    ends = [(k, e) for e in _ENDS if (k := text.find(e, body)) >= 0]
    if not ends:
        return wait(final)
    close, end = min(ends)
    call = conform(tools, found[1], loads(text[body:close]))
    return None if call is None else Match(close + len(end), (call,))
