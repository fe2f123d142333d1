"""The recorded exchange (format ``lmsd.exchange``, version 1), without I/O: what ``lmsd
record`` writes and ``lmsd replay`` reads, checked whole (``parse``). Two runs' client-visible
streams are compared in ``stream_diff.py``.

One file is one client request and everything lmsd did for it::

    {"format": "lmsd.exchange", "version": 1, "recorded_at": <unix seconds>,
     "front": "anthropic" | "openai_chat" | "openai_responses", "session", "agent",
     "dialect": the upstream kind spoken ("responses", "chat", "messages"),
     "server": the dialect's class (LlamaServerDialect speaks "chat" with extras),
     "client": {"method", "path", "headers": {allowed names only}, "body": JSON or text},
     "upstream": [{"method", "path", "body", "status", "headers", "chunks": [[t, text]]}],
     "client_stream": {"status", "headers", "chunks": [[t, text], ...]},
     "timings": {"first_upstream_byte", "first_client_byte", "total"}}

``t`` is seconds since the client request arrived. Secrets never reach the file: headers
are kept only when their name is on an allow-list (no Authorization, x-api-key, cookie or
anything key-, token- or secret-like), and a body's key-like fields are masked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

FORMAT = "lmsd.exchange"
VERSION = 1

#: Request and response headers that help to reproduce a turn and carry no secret.
ALLOWED_HEADERS = frozenset({
    "content-type", "accept", "user-agent", "anthropic-version", "anthropic-beta",
    "x-claude-code-session-id", "session_id", "x-lmsd-session", "x-lmsd-agent",
    "originator", "version", "openai-beta", "x-stainless-lang", "x-stainless-package-version",
    "x-request-id", "cache-control", "transfer-encoding", "content-length"})
_SECRET_NAME = re.compile(r"auth|key|token|secret|cookie|password|credential", re.I)
MASK = "<redacted>"


def allowed_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The headers worth keeping, by lower-case name: allow-listed and not secret-like."""
    kept: dict[str, str] = {}
    for name, value in headers:
        low = name.lower()
        if low in ALLOWED_HEADERS and not _SECRET_NAME.search(low):
            kept[low] = value
    return kept


def redact(value: Any) -> Any:
    """``value`` with every key-like field's value masked, whatever its type (a key pasted
    into a body, ``{"api_key": 12345}``, ``{"token": {"value": ...}}``); the conversation's
    text and the counts in ``_KEEP_FIELDS`` are kept, and so is a tool's JSON schema for a
    parameter named ``token`` (under ``properties``). Iterative: a body nested deeper than
    any parser allows costs no recursion."""
    root: list[Any] = [None]
    work: list[tuple[Any, Any, Any, Any]] = [(value, root, 0, None)]  # (value, into, at, name)
    while work:
        source, parent, at, name = work.pop()
        if isinstance(source, dict):
            copy: dict[Any, Any] = {}
            parent[at] = copy
            for k, v in source.items():
                schema = name == "properties" and isinstance(v, dict)
                copy[k] = MASK if _masked(k, v) and not schema else None
                if copy[k] is None:
                    work.append((v, copy, k, k))
        elif isinstance(source, list):
            items: list[Any] = [None] * len(source)
            parent[at] = items
            work.extend((v, items, i, None) for i, v in enumerate(source))
        else:
            parent[at] = source
    return root[0]


def _masked(key: Any, value: Any) -> bool:
    """A key-like name, unless it is a count or protocol field holding a plain value."""
    if not isinstance(key, str) or not _SECRET_NAME.search(key):
        return False
    plain = value is None or (isinstance(value, (int, float, str))
                              and not isinstance(value, bool))
    return not (key in _KEEP_FIELDS and plain)


#: Fields whose names look key-like but hold counts or protocol data, not secrets.
_KEEP_FIELDS = frozenset({"max_tokens", "max_output_tokens", "input_tokens", "output_tokens",
                          "max_completion_tokens", "cache_key", "prompt_cache_key",
                          "budget_tokens", "total_tokens", "cached_tokens"})


def as_body(raw: bytes) -> Any:
    """A body as JSON when it is JSON, else as text (what a file can hold)."""
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def new_exchange(*, recorded_at: float, method: str, path: str,
                 headers: Iterable[tuple[str, str]], body: bytes) -> dict[str, Any]:
    """An exchange holding only its client request so far (redacted)."""
    return {"format": FORMAT, "version": VERSION, "recorded_at": round(recorded_at, 3),
            "front": None, "session": None, "agent": None, "dialect": None, "server": None,
            "client": {"method": method, "path": path, "headers": allowed_headers(headers),
                       "body": redact(as_body(body))},
            "upstream": [], "client_stream": {"status": None, "headers": {}, "chunks": []},
            "timings": {}}


class FormatError(ValueError):
    """A file that is not a readable exchange, and why (one line)."""


#: Replay reads no bigger file (a recording is a few MB; the daemon's body limit is 32 MB).
MAX_FILE_BYTES = 64 * 1024 * 1024
#: Deeper JSON than this is no recording lmsd wrote (and would overflow the parsers'
#: recursion); the client body sits three levels down.
MAX_DEPTH = 400
#: The routes a recorded client request may name: lmsd's proxy API, and nothing else (no
#: admin API, no ``/session/ID/config``, no absolute URL, no ``..``).
CLIENT_PATH = re.compile(r"(?:/session/[A-Za-z0-9][A-Za-z0-9._:-]{0,127})?"
                         r"/v1/(?:messages(?:/count_tokens)?|chat/completions|responses)")
#: An upstream request's path in a recording is only matched, never sent: a plain path.
_UPSTREAM_PATH = re.compile(r"/(?!/)[A-Za-z0-9._~/%:@!$&'()*+,;=-]{0,500}(?:\?[ -~]{0,2000})?")
_METHOD = re.compile(r"[A-Z]{1,16}")
#: A header value that can go on the wire as it is: visible ASCII, spaces and tabs.
_HEADER_VALUE = re.compile(r"[\t -~]{0,8192}")
DIALECTS = frozenset({"responses", "chat", "messages"})
_TOP_STRINGS = ("front", "session", "agent", "server")


def check(exchange: Any) -> dict[str, Any]:
    """``exchange`` if it is one this version reads, every part of it of the type the
    format says; FormatError (a ValueError) saying where and why not. A replay file is
    untrusted: this is what lets the rest of replay use it without further checks."""
    if not isinstance(exchange, dict) or exchange.get("format") != FORMAT:
        raise FormatError(f"not an {FORMAT} file")
    if exchange.get("version") != VERSION or isinstance(exchange.get("version"), bool):
        raise FormatError(f"{FORMAT} version {_shown(exchange.get('version'))} is not "
                          f"supported (this lmsd reads version {VERSION})")
    _depth(exchange)
    if not _number(exchange.get("recorded_at", 0)):
        raise FormatError("recorded_at is not a number")
    for key in _TOP_STRINGS:
        _optional_text(exchange.get(key), key)
    dialect = exchange.get("dialect")
    if dialect is not None and (not isinstance(dialect, str) or dialect not in DIALECTS):
        raise FormatError(f"dialect {_shown(dialect)} is not one of {sorted(DIALECTS)}")
    client = _dict(exchange.get("client"), "client")
    if client.get("method", "POST") != "POST":
        raise FormatError(f"client.method {_shown(client.get('method'))} is not POST "
                          "(lmsd records POST requests only)")
    path = client.get("path")
    if not isinstance(path, str) or ".." in path or not CLIENT_PATH.fullmatch(path):
        raise FormatError(f"client.path {_shown(path)} is not one of lmsd's API routes "
                          "(/v1/messages, /v1/messages/count_tokens, /v1/chat/completions, "
                          "/v1/responses, or one under /session/ID)")
    _headers(client.get("headers", {}), "client.headers")
    if "body" not in client:
        raise FormatError("client.body is missing")
    if isinstance(client["body"], str):
        _text(client["body"], "client.body")
    upstream = exchange.get("upstream", [])
    if not isinstance(upstream, list):
        raise FormatError(f"upstream is {_kind(upstream)}, not a list")
    for index, entry in enumerate(upstream):
        _upstream(entry, f"upstream[{index}]")
    stream = _dict(exchange.get("client_stream"), "client_stream")
    status = stream.get("status")
    if status is not None:
        _status(status, "client_stream.status")
    _headers(stream.get("headers", {}), "client_stream.headers")
    _chunks(stream.get("chunks", []), "client_stream.chunks")
    timings = _dict(exchange.get("timings", {}), "timings")
    for key, value in timings.items():
        if not _number(value):
            raise FormatError(f"timings.{_shown(key)} is not a number")
    return exchange


def _upstream(entry: Any, where: str) -> None:
    entry = _dict(entry, where)
    method = entry.get("method")
    if not isinstance(method, str) or not _METHOD.fullmatch(method):
        raise FormatError(f"{where}.method {_shown(method)} is not an HTTP method")
    path = entry.get("path")
    if not isinstance(path, str) or not _UPSTREAM_PATH.fullmatch(path):
        raise FormatError(f"{where}.path {_shown(path)} is not a plain path")
    _status(entry.get("status"), f"{where}.status")
    _headers(entry.get("headers", {}), f"{where}.headers")
    _chunks(entry.get("chunks", []), f"{where}.chunks")
    if not _number(entry.get("t", 0)):
        raise FormatError(f"{where}.t is not a number")


def _headers(headers: Any, where: str) -> None:
    """Allow-listed, secret-free names with wire-safe values: lmsd writes no other, so a
    file holding one (an ``Authorization``, a ``Host``, a ``Location``) is refused."""
    headers = _dict(headers, where)
    for name, value in headers.items():
        if (not isinstance(name, str) or name.lower() not in ALLOWED_HEADERS
                or _SECRET_NAME.search(name)):
            raise FormatError(f"{where} names {_shown(name)}: not a header the format "
                              f"keeps ({', '.join(sorted(ALLOWED_HEADERS))})")
        if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
            raise FormatError(f"{where}.{name} is not a printable ASCII string")


def _chunks(chunks: Any, where: str) -> None:
    if not isinstance(chunks, list):
        raise FormatError(f"{where} is {_kind(chunks)}, not a list of [t, text] pairs")
    for index, chunk in enumerate(chunks):
        if (not isinstance(chunk, list) or len(chunk) != 2 or not _number(chunk[0])
                or not isinstance(chunk[1], str)):
            raise FormatError(f"{where}[{index}] is not a [t, text] pair")
        _text(chunk[1], f"{where}[{index}]")


def _status(status: Any, where: str) -> None:
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise FormatError(f"{where} {_shown(status)} is not an HTTP status (100-599)")


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FormatError(f"{where} is {_kind(value)}, not an object")
    return value


def _optional_text(value: Any, where: str) -> None:
    if value is not None and (not isinstance(value, str) or len(value) > 1000):
        raise FormatError(f"{where} is {_kind(value)}, not a short string or null")
    if isinstance(value, str):
        _text(value, where)


def _text(value: str, where: str) -> None:
    """A string that encodes as UTF-8 (JSON can spell a lone surrogate; UTF-8 cannot)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError(f"{where} holds text that is not valid Unicode") from None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and value == value and abs(value) != float("inf")


def _depth(value: Any) -> None:
    """FormatError past ``MAX_DEPTH`` levels, found without recursion."""
    work = [(value, 1)]
    while work:
        item, depth = work.pop()
        if depth > MAX_DEPTH:
            raise FormatError(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            work.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            work.extend((v, depth + 1) for v in item)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null", int: "a number", float: "a number"}.get(type(value), "?")


def _shown(value: Any) -> str:
    """``value`` for a one-line message: repr'd (control characters escaped), cut short."""
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def parse(raw: bytes) -> dict[str, Any]:
    """A replay file's bytes as a checked exchange; FormatError saying why not."""
    if len(raw) > MAX_FILE_BYTES:
        raise FormatError(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"not UTF-8 (byte {exc.start})") from None
    try:
        exchange = json.loads(text)
    except RecursionError:
        raise FormatError("JSON nested too deep to read") from None
    except ValueError as exc:
        raise FormatError(f"not JSON: {exc}") from None
    return check(exchange)


def joined(chunks: Iterable[list[Any]]) -> str:
    return "".join(text for _, text in chunks)
