"""Session identity and per-session configuration."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..protocol.failures import invalid
from ..protocol.text import CONTROL

#: A session (or agent) id. Anchored with ``\A``/``\Z`` and used with ``fullmatch``: with
#: ``$``, ``"abc\n"`` passed, went upstream as an affinity header, made httpx fail, and
#: that failure counted against the upstream until every breaker was open.
SESSION_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")
ID_RULE = ("use 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or "
           "digit")


def is_session_id(value: Any) -> bool:
    """Is ``value`` a whole, valid session id (no trailing newline, no control byte)?"""
    return isinstance(value, str) and SESSION_ID.fullmatch(value) is not None


def check_session_id(session_id: str) -> str:
    """``session_id`` itself, or a 400 naming the problem (the id is shown escaped)."""
    if not is_session_id(session_id):
        raise invalid(f"session id: {ID_RULE} (got {session_id[:40]!r})")
    return session_id


#: A session id as stored: a keyed client's are in its namespace, ``NAME~ID``
#: (protocol/client_keys.py). The admin API names sessions so.
STORED_SESSION_ID = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9_-]{0,31}~)?"
                               r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def check_stored_session_id(session_id: str) -> str:
    """A session id as the admin API takes it: ``ID``, or ``CLIENT~ID`` for a client's."""
    if not STORED_SESSION_ID.fullmatch(session_id):
        raise invalid(
            "session id: use 1-128 letters, digits, '.', '_', ':' or '-', starting with a "
            "letter or digit, after CLIENT~ for a keyed client's session"
        )
    return session_id


def session_id_of(headers: Any, metadata: dict[str, Any] | None, path_id: str | None) -> str:
    """Claude Code's session id: header, then ``metadata.user_id``, then the path."""
    header = headers.get("x-claude-code-session-id")
    if is_session_id(header):
        return header
    user_id = (metadata or {}).get("user_id")
    if isinstance(user_id, str) and user_id.startswith("{"):
        try:
            sid = json.loads(user_id).get("session_id")
        except (ValueError, AttributeError):
            sid = None
        if is_session_id(sid):
            return sid
    elif isinstance(user_id, str) and "_session_" in user_id:
        sid = user_id.rsplit("_session_", 1)[1]
        if is_session_id(sid):
            return sid
    return path_id or "default"


def agent_id_of(headers: Any) -> str:
    agent = headers.get("x-claude-code-agent-id")
    return agent if is_session_id(agent) else "main"


@dataclass
class SessionConfig:
    """lmsproxy parity: a per-session model override and tool allow-list."""

    model: str | None = None
    allowed_tools: frozenset[str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "allowedTools": sorted(self.allowed_tools) if self.allowed_tools is not None
            else None,
        }


def parse_session_config(body: Any) -> SessionConfig:
    if not isinstance(body, dict):
        raise invalid("session config: expected a JSON object")
    unknown = set(body) - {"model", "allowedTools"}
    if unknown:
        raise invalid(f"session config: unknown field {sorted(unknown)[0]!r}")
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise invalid("model: expected a non-empty string or null")
    _no_control("model", model)
    tools = body.get("allowedTools")
    if tools is not None:
        if not isinstance(tools, list) or not all(isinstance(t, str) and t for t in tools):
            raise invalid("allowedTools: expected an array of tool names or null")
        for n, tool in enumerate(tools):
            _no_control(f"allowedTools.{n}", tool)
        tools = frozenset(tools)
    return SessionConfig(model=model, allowed_tools=tools)


def _no_control(where: str, value: str | None) -> None:
    """A config value reaches ``lmsd tail`` and the log: no control characters in it."""
    found = CONTROL.search(value) if value is not None else None
    if found:
        raise invalid(f"{where}: control character {found.group()!r} at {found.start()} is "
                      f"not allowed in a session config value")
