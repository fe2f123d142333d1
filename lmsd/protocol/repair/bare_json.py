"""A bare JSON call that is the whole reply (ollama #15529): decided when the text ends,
and only for an object with exactly the keys a call has."""

from __future__ import annotations

from .base import Call, Tools, json_call, loads

NAME = "bare_json"


def parse_whole(text: str, tools: Tools) -> Call | None:
    return json_call(loads(text.strip()), tools, strict=True)
