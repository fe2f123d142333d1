"""Client keys: who may use a proxy shared on a network, and whose sessions are whose.

Off loopback the proxy answers only requests that carry one of the configured keys, the
way each client sends its own API key: ``x-api-key`` (Claude Code's ``ANTHROPIC_API_KEY``)
or ``Authorization: Bearer`` (``ANTHROPIC_AUTH_TOKEN``, Codex's provider ``env_key``, chat
clients). Each key has a name; a request that carries a key is that client's, and its
session ids live in that client's own namespace (``NAME~ID``: ``~`` is never in a session
id a client sends), so one client cannot read, chain onto, reset or record another's.

Pure decisions: the quart hook is ``fronts/client_keys.py``.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping

from .failures import ClientKeyRefused

#: A client's name: short, and safe in a metric label, a log line and a session id.
CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
#: Keys shorter than this are refused at startup: a guessable key is no key.
MIN_KEY_LENGTH = 16
#: Between a client's name and the session id it sent (never in a session id itself).
SEPARATOR = "~"
SETTING = "client_keys (LMSD_CLIENT_KEYS, or client_keys_file)"


def parse_client_key(name: str, key: str) -> tuple[str, str]:
    """One ``name = key`` pair, checked; ValueError names the name, never the key."""
    name = name.strip()
    if not CLIENT_NAME.fullmatch(name):
        raise ValueError(f"client name {name!r}: use 1-32 letters, digits, '_' or '-', "
                         "starting with a letter or digit")
    key = key.strip()
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(f"the key of {name!r} is shorter than {MIN_KEY_LENGTH} characters "
                         "(make one with: openssl rand -hex 24)")
    if not key.isprintable() or any(c.isspace() or c == "," for c in key):
        raise ValueError(f"the key of {name!r} has a space, a comma or a control character")
    return name, key


def parse_pairs(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Pairs to ``{name: key}``: names and keys each unique."""
    keys: dict[str, str] = {}
    for raw_name, raw_key in pairs:
        name, key = parse_client_key(raw_name, raw_key)
        if name in keys:
            raise ValueError(f"two keys are named {name!r}")
        if key in keys.values():
            raise ValueError(f"{name!r} has the same key as another client")
        keys[name] = key
    return keys


def parse_key_lines(text: str) -> list[tuple[str, str]]:
    """A keys file: one ``NAME=KEY`` (or ``NAME = "KEY"``) a line; ``#`` starts a comment."""
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, key = line.partition("=")
        if not sep:
            raise ValueError(f"line {number}: expected NAME=KEY")
        pairs.append((name.strip(), key.strip().strip('"')))
    return pairs


def presented_keys(headers: Mapping[str, str]) -> list[str]:
    """The keys a request carries: ``x-api-key`` and ``Authorization: Bearer`` (either)."""
    found = []
    if api_key := (headers.get("x-api-key") or "").strip():
        found.append(api_key)
    scheme, _, token = (headers.get("Authorization") or "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        found.append(token.strip())
    return found


def token_matches(token: str, authorization: str | None, query: str | None = None) -> bool:
    """Does a request carry ``token`` (the admin token) as ``Authorization: Bearer``, or
    as ``?token=`` (``query``: the dashboard's link)? Compared in constant time; no token
    configured lets everyone through."""
    if not token:
        return True
    supplied = query or ""
    if authorization and authorization.lower().startswith("bearer "):
        supplied = authorization[7:].strip()
    return hmac.compare_digest(supplied.encode(), token.encode())


def match(keys: Mapping[str, str], presented: list[str]) -> str | None:
    """The name of the client whose key was presented, else None. Every presented key is
    compared with every configured one (constant time each), so the time taken says
    nothing about which key, or how much of it, was right."""
    found = None
    for candidate in presented:
        for name, key in keys.items():
            if hmac.compare_digest(candidate.encode(), key.encode()) and found is None:
                found = name
    return found


def identify(keys: Mapping[str, str], headers: Mapping[str, str], *, required: bool
             ) -> str | None:
    """The client a request comes from (None: anonymous, allowed only when keys are not
    ``required``). Raises ClientKeyRefused, naming the problem and never the key."""
    presented = presented_keys(headers)
    name = match(keys, presented) if keys else None
    if name is not None or not required:
        return name
    if not presented:
        raise ClientKeyRefused("no client key sent: this lmsd is shared on a network and needs "
                           "one of its client keys, as x-api-key or Authorization: Bearer "
                           "(ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN for Claude Code, the "
                           "provider's env_key for Codex; lmsd env prints them)")
    raise ClientKeyRefused("client key not recognised: the key sent (x-api-key or "
                       f"Authorization: Bearer) is none of this lmsd's {SETTING}")


def scoped(client: str | None, session: str) -> str:
    """``session`` in ``client``'s namespace (itself for an anonymous, loopback client)."""
    return f"{client}{SEPARATOR}{session}" if client else session


def client_of(session: str) -> str | None:
    """The client whose namespace a stored session id is in (None: anonymous)."""
    name, sep, _ = session.partition(SEPARATOR)
    return name if sep else None
