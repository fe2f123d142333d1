"""Qwen3-Coder XML: ``<function=NAME><parameter=KEY>VALUE</parameter>...</function>``.

Seen with or without the ``<tool_call>`` wrapper, with a stray ``</tool_call>`` after it
(ollama PR #17742), or with ``</tool_call>`` in place of ``</function>``. A parameter left
unclosed ends at the next one, as Qwen's own parser reads it.
"""

from __future__ import annotations

import re

from .base import NAME_LIMIT, Match, Result, Tools, optional_closer, skip_ws, trim_newline, wait
from .schema import conform

NAME = "qwen_xml"
OPENERS = ("<function=", "<tool_call>")

_FUNCTION = "<function="
_CLOSERS = ("</function>", "</tool_call>")
_PARAM = re.compile(r"<parameter=([^>\n]*)>(.*?)(?:</parameter>|(?=<parameter=)|\Z)", re.DOTALL)


def parse(text: str, final: bool, tools: Tools) -> Result:
    i = 0
    if text.startswith("<tool_call>"):
        i = skip_ws(text, len("<tool_call>"))
        rest = text[i:i + len(_FUNCTION)]
        if not _FUNCTION.startswith(rest):
            return None
        if len(rest) < len(_FUNCTION):
            return wait(final)
    gt = text.find(">", i)
    if gt < 0:
        return None if len(text) - i > NAME_LIMIT else wait(final)
    name = text[i + len(_FUNCTION):gt].strip()
    if name not in tools:
        return None
    ends = [(k, c) for c in _CLOSERS if (k := text.find(c, gt)) >= 0]
    if not ends:
        return wait(final)
    close, closer = min(ends)
    params = {m[1].strip(): trim_newline(m[2]) for m in _PARAM.finditer(text, gt + 1, close)}
    call = conform(tools, name, params)
    if call is None:
        return None
    if closer == "</tool_call>":  # the function left unclosed
        return Match(close + len(closer), (call,))
    end = optional_closer(text, close + len(closer), "</tool_call>", final)
    return wait(final) if end is None else Match(end, (call,))
