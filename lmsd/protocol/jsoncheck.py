"""What a parsed request body may not hold, though JSON allows it.

- Nesting deeper than ``MAX_DEPTH``: the parser accepts about 1000 levels, but the code
  after it (``dataclasses.asdict`` storing a request for a re-warm, ``copy.deepcopy``,
  redaction, ``json.dumps`` going upstream) recurses two or three frames per level and
  blew the stack far from the request that caused it (the cache keeper crashed). No
  agent's request nests beyond about 20.
- A lone surrogate: JSON can spell one (``"\\ud800"``) and Python keeps it in a ``str``,
  but nothing can encode it (UTF-8 going upstream, a hash, the store, the log).

Both are refused when the body is read, naming where. One iterative walk, and only when a
cheap look says the body could hold either: its raw bytes for a surrogate, a walk of its
containers alone, level by level, for the depth (an agent's request has hundreds of
brackets, so counting them rules out nothing; a tenth of the cost of the full walk)."""

from __future__ import annotations

import re
from typing import Any

MAX_DEPTH = 100
#: A surrogate spelled in JSON text: a pair of them (``\\ud83d\\ude00``) is one character
#: (an emoji, from any client that escapes non-ASCII), only one alone is refused.
_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LOW_ESCAPE = re.compile(r"\\u[dD][c-fC-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _may_hold_surrogate(raw: bytes) -> bool:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return True  # json decodes bytes with surrogatepass: encoded surrogates get through
    high_end = -1  # where the last high half ended
    for found in _ESCAPE.finditer(text):
        start = before = found.start()
        while before and text[before - 1] == "\\":
            before -= 1
        if (start - before) % 2:
            continue  # an escaped backslash, then text
        if found.group()[3] in "89abAB":  # a high half: a low one must follow at once
            if not _LOW_ESCAPE.match(text, found.end()):
                return True
            high_end = found.end()
        elif start != high_end:  # a low half with no high one before it
            return True
    return False


def problem(raw: bytes, value: Any) -> str | None:
    """Why the body ``raw`` (parsed as ``value``) is refused, or None."""
    deep = raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _deeper_than(value, MAX_DEPTH)
    surrogates = _may_hold_surrogate(raw)
    if not (deep or surrogates):
        return None
    # the path to an item is a linked (parent, key) tuple, made a string only to be shown
    stack: list[tuple[Any, Any, int]] = [(value, None, 0)]
    while stack:
        item, link, depth = stack.pop()
        if isinstance(item, str):
            if surrogates and (found := _SURROGATE.search(item)):
                return _lone(_path(link), found.group())
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                return f"{_shown(_path(link))}: nested too deeply (more than {MAX_DEPTH} levels)"
            if isinstance(item, list):
                stack.extend((sub, (link, i), depth + 1) for i, sub in enumerate(item))
                continue
            for key, sub in item.items():
                if surrogates and (found := _SURROGATE.search(key)):
                    return _lone(f"{_path(link)} (a key)", found.group())
                stack.append((sub, (link, key), depth + 1))
    return None


def _deeper_than(value: Any, limit: int) -> bool:
    """Does ``value`` hold a list or dict ``limit`` levels down (the root is level 0)?"""
    containers = (dict, list)  # a tuple: isinstance is twice as fast as with dict | list
    level = [value] if isinstance(value, containers) else []
    for _ in range(limit):
        below: list[Any] = []
        for item in level:
            values = item.values() if isinstance(item, dict) else item
            below += [sub for sub in values if isinstance(sub, containers)]
        if not below:
            return False
        level = below
    return True


def _path(link: Any) -> str:
    keys = []
    while link is not None:
        link, key = link
        keys.append(str(key))
    return ".".join(reversed(keys)) or "body"


def _escaped(text: str) -> str:
    """Printable and encodable: surrogates (and anything else odd) as ``\\uXXXX``."""
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


def _shown(where: str) -> str:
    """A field's path (the client's own keys): escaped, cut short."""
    shown = _escaped(where)
    return shown if len(shown) <= 200 else shown[:200] + "..."


def _lone(where: str, char: str) -> str:
    return (f"{_shown(where)}: a lone surrogate ({_escaped(char)}) is not valid Unicode; "
            f"send UTF-8 text (surrogates only in pairs)")
