"""GLM: ``<tool_call>NAME<arg_key>K</arg_key><arg_value>V</arg_value>...</tool_call>``."""

from __future__ import annotations

import re

from .base import NAME_LIMIT, Match, Result, Tools, wait
from .schema import conform

NAME = "glm"
OPENERS = ("<tool_call>",)

_CLOSE = "</tool_call>"
_PAIR = re.compile(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>", re.DOTALL)


def parse(text: str, final: bool, tools: Tools) -> Result:
    start = len("<tool_call>")
    lt = text.find("<", start)
    if lt < 0:
        return None if len(text) - start > NAME_LIMIT else wait(final)
    name = text[start:lt].strip()
    if name not in tools:
        return None
    close = text.find(_CLOSE, lt)
    if close < 0:
        return wait(final)
    body = text[lt:close]
    pairs = _PAIR.findall(body)
    if _PAIR.sub("", body).strip():
        return None  # something else in there: not this format
    call = conform(tools, name, {k.strip(): v for k, v in pairs})
    return None if call is None else Match(close + len(_CLOSE), (call,))
