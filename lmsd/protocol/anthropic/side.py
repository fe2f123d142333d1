"""Claude Code's side requests, recognised by what they are: a session title, a summary, a
quota or topic check are one-shot questions beside the conversation, not turns of it.
They share one key (``BACKGROUND``: one slot, never saved, never re-warmed, the
``background_upstream``), so that they neither take the conversation's slot nor replace
the request a re-warm replays.

They used to be told only by their haiku-class model name. When the small/fast model
setting (``ANTHROPIC_SMALL_FAST_MODEL``, ``ANTHROPIC_DEFAULT_HAIKU_MODEL``) names a local
model, the name says nothing; the request's shape still does (captured from Claude Code):
every turn of a conversation (main, subagent, compaction) carries its tools and, but for
``--bare``-like setups, thinking; a title request carries neither, and asks for JSON of a
given schema (``output_config.format``): an answer for a program, not a turn for the
user. A tool-less one-message request is not enough: that is also the first turn of any
plain chat, which must keep its own key. Pure: no I/O."""

from __future__ import annotations

from typing import Any

from ..models import is_claude_name


def is_haiku_name(model: str) -> bool:
    """Claude Code's side requests and haiku subagents ask for a haiku-class name."""
    return is_claude_name(model) and "haiku" in model.lower()


def is_side_request(body: dict[str, Any]) -> bool:
    """A side request: a haiku-class name, or no tools, no thinking and a structured
    output format."""
    model = body.get("model")
    if isinstance(model, str) and is_haiku_name(model):
        return True
    if body.get("tools"):
        return False  # a turn of a conversation: it may call its tools
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") not in (None, "disabled"):
        return False
    return _structured(body)


def _structured(body: dict[str, Any]) -> bool:
    """It asks for JSON of a given schema (``output_config.format``, or the older
    top-level ``output_format``)."""
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else body.get("output_format")
    return isinstance(fmt, dict) and fmt.get("type") == "json_schema"
