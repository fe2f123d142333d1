"""``<invoke name="NAME"><parameter name="K">V</parameter></invoke>``, alone or inside
``<function_calls>`` (the Claude-style XML some fine-tunes print)."""

from __future__ import annotations

import re

from .base import (
    NAME_LIMIT,
    Call,
    Match,
    Result,
    Tools,
    optional_closer,
    skip_ws,
    trim_newline,
    wait,
)
from .schema import conform

NAME = "invoke_xml"
OPENERS = ("<invoke", "<function_calls>")

_HEAD = re.compile(r'<invoke\s+name\s*=\s*"([^"\n]*)"\s*>')
_PARAM = re.compile(r'<parameter\s+name\s*=\s*"([^"\n]*)"\s*>(.*?)</parameter>', re.DOTALL)
_CLOSE = "</invoke>"
_WRAP_CLOSE = "</function_calls>"


def parse(text: str, final: bool, tools: Tools) -> Result:
    if not text.startswith("<function_calls>"):
        got = _invoke(text, 0, final, tools)
        if not isinstance(got, tuple):
            return got
        end = optional_closer(text, got[0], _WRAP_CLOSE, final)
        return wait(final) if end is None else Match(end, (got[1],))
    i, calls = len("<function_calls>"), []
    while True:
        i = skip_ws(text, i)
        rest = text[i:i + len(_WRAP_CLOSE)]
        if rest.startswith(_WRAP_CLOSE):
            return Match(i + len(_WRAP_CLOSE), tuple(calls)) if calls else None
        if len(rest) < len(_WRAP_CLOSE) and (_WRAP_CLOSE.startswith(rest) or
                                             "<invoke".startswith(rest)):
            return wait(final)
        got = _invoke(text, i, final, tools)
        if not isinstance(got, tuple):
            return got
        i, call = got
        calls.append(call)


def _invoke(text: str, i: int, final: bool, tools: Tools) -> Result | tuple[int, Call]:
    head = _HEAD.match(text, i)
    if head is None:
        gt = text.find(">", i)
        return wait(final) if gt < 0 and len(text) - i <= NAME_LIMIT else None
    if head[1] not in tools:
        return None
    close = text.find(_CLOSE, head.end())
    if close < 0:
        return wait(final)
    body = text[head.end():close]
    params = {m[1]: trim_newline(m[2]) for m in _PARAM.finditer(body)}
    if _PARAM.sub("", body).strip():
        return None
    call = conform(tools, head[1], params)
    return None if call is None else (close + len(_CLOSE), call)
