"""LFM pythonic calls: ``<|tool_call_start|>[NAME(key="value", ...)]<|tool_call_end|>``
(LM Studio #1979). Read with :mod:`ast` (parsing only, never evaluating)."""

from __future__ import annotations

import ast

from .base import Call, Match, Result, Tools, wait
from .schema import conform

NAME = "lfm_pythonic"
OPENERS = ("<|tool_call_start|>",)

_CLOSE = "<|tool_call_end|>"
_JSON_NAMES = {"true": True, "false": False, "null": None}


def parse(text: str, final: bool, tools: Tools) -> Result:
    close = text.find(_CLOSE)
    if close < 0:
        return wait(final)
    source = text[len(OPENERS[0]):close].strip()
    try:
        tree = ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError):
        return None
    nodes = tree.elts if isinstance(tree, ast.List) else [tree]
    calls: list[Call] = []
    for node in nodes:
        call = _call(node, tools)
        if call is None:
            return None
        calls.append(call)
    return Match(close + len(_CLOSE), tuple(calls)) if calls else None


def _call(node: ast.expr, tools: Tools) -> Call | None:
    if not isinstance(node, ast.Call) or node.args or not isinstance(node.func, ast.Name):
        return None
    args = {}
    for kw in node.keywords:
        if kw.arg is None:
            return None
        try:
            args[kw.arg] = _literal(kw.value)
        except ValueError:
            return None
    return conform(tools, node.func.id, args)


def _literal(node: ast.expr) -> object:
    if isinstance(node, ast.Name) and node.id in _JSON_NAMES:
        return _JSON_NAMES[node.id]
    if isinstance(node, ast.List):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True)
                if k is not None}
    return ast.literal_eval(node)
