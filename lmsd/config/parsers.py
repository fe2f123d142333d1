"""Value parsers: each turns a TOML value, an environment string or a flag into a setting's
value, or raises ValueError saying what was expected (the loader adds the key)."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from ..protocol.client_keys import parse_key_lines, parse_pairs
from ..protocol.urls import display_url


class ConfigError(Exception):
    """A setting is wrong; the message names the key."""


def state_dir_default() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                              "state")
    return os.path.join(base, "lmsd")


def host_port(value: Any) -> str:
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return text


def url(value: Any) -> str:
    text = str(value).strip().rstrip("/")
    if text == "auto":
        return text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http(s) URL or 'auto', got {display_url(text)!r}")
    return text


def positive(kind: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("expected a number, got a boolean")
        number = kind(value)
        if number <= 0:
            raise ValueError(f"must be positive, got {value!r}")
        return number
    return parse


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
          "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4,
          "tb": 1000**4, "tib": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def byte_size(value: Any) -> int:
    """Bytes: a whole number, or a number with a unit ("18GiB", "512 MB", "1.5 GB");
    0 means none (no budget, memory unknown)."""
    if isinstance(value, bool):
        raise ValueError("expected a size like '18GiB', got a boolean")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"must be 0 or more, got {value!r}")
        return int(value)
    match = _SIZE.match(str(value))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"expected a size like '18GiB', '512MB' or bytes, got {value!r}")
    return int(float(match.group(1)) * _UNITS[unit])


def _non_negative(kind: Callable[[Any], Any], what: str, zero: str
                  ) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"expected {what}, got a boolean")
        number = kind(value)
        if number < 0:
            raise ValueError(f"must be 0 ({zero}) or more, got {value!r}")
        return number
    return parse


non_negative_int: Callable[[Any], int] = _non_negative(int, "a whole number", "off")
non_negative_seconds: Callable[[Any], float] = _non_negative(float, "seconds", "never")


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")
        return text
    return parse


def mapping(value: Any) -> dict[str, str]:
    """``{"opus": "x"}`` in TOML, or ``opus=x,haiku=y`` in env and flags."""
    if isinstance(value, Mapping):
        items = value.items()
        for name, target in items:
            if not isinstance(target, str) or not target.strip():
                raise ValueError(f"{name!r} must name a model (a non-empty string), "
                                 f"got {target!r}")
    else:
        pairs = [p for p in str(value).split(",") if p.strip()]
        items = []
        for pair in pairs:
            name, sep, target = pair.partition("=")
            if not sep or not name.strip() or not target.strip():
                raise ValueError(f"expected NAME=MODEL[,NAME=MODEL...], got {pair!r}")
            items.append((name, target))
    return {str(k).strip(): str(v).strip() for k, v in items}


def str_list(parse: Callable[[list[str]], list[str]]) -> Callable[[Any], list[str]]:
    """A TOML array of strings, or ``a,b`` in env and flags."""
    def parse_list(value: Any) -> list[str]:
        if isinstance(value, list | tuple):
            if not all(isinstance(v, str) for v in value):
                raise ValueError(f"expected a list of strings, got {value!r}")
            return parse(list(value))
        if not isinstance(value, str):
            raise ValueError(f"expected a list of strings or A,B, got {value!r}")
        return parse(value.split(","))
    return parse_list


def client_keys(value: Any) -> dict[str, str]:
    """``[client_keys]`` ``name = "key"`` in TOML, ``name=key,name=key`` in env and flags."""
    if isinstance(value, Mapping):
        if not all(isinstance(v, str) for v in value.values()):
            raise ValueError("expected name = \"key\" strings")
        return parse_pairs([(str(k), v) for k, v in value.items()])
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        value = ",".join(value)  # ["name=key", ...]
    if not isinstance(value, str):
        raise ValueError("expected a [client_keys] table or NAME=KEY,NAME=KEY")
    return parse_pairs(parse_key_lines(value.replace(",", "\n")))


def string(value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"expected a string, got {value!r}")
    return str(value)


def path(value: Any) -> str:
    return os.path.expanduser(string(value))


def _stripped(items: list[str]) -> list[str]:
    return [i.strip() for i in items if i.strip()]


#: Names, comma-separated or a TOML array, blanks dropped.
names = str_list(_stripped)


class _Named(Protocol):
    name: str


N = TypeVar("N", bound=_Named)


def named_tables(value: Any, parse: Callable[[Any], N], what: str) -> list[N]:
    """An array of tables (``[[upstreams]]``, ``[[models]]``), each parsed by ``parse``
    (its errors prefixed with its index) and each named once."""
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected {what} tables, got {value!r}")
    entries = []
    for n, item in enumerate(value):
        try:
            entries.append(parse(item))
        except ValueError as exc:
            raise ValueError(f"[{n}] {exc}") from None
    names = [e.name for e in entries]
    if dupe := next((n for n in names if names.count(n) > 1), None):
        raise ValueError(f"two {what} are named {dupe!r}: give each a unique name")
    return entries


def check_keys(value: Mapping[str, Any], known: Iterable[str]) -> None:
    """A table's keys, each one ``known``: else ValueError naming the first stranger, the
    key it resembles and every key there is."""
    known = set(known)
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}{did_you_mean(unknown[0], known)} "
                         f"(known: {', '.join(sorted(known))})")


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'min_context'?"`` for a misspelt key, else nothing."""
    close = difflib.get_close_matches(name.replace("-", "_").lower(), sorted(known), n=1,
                                      cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def strip_api_suffix(url: str) -> str:
    """``http://host:1234/v1`` (the OpenAI base-URL form) -> ``http://host:1234``:
    lmsd adds ``/v1/...`` and ``/api/...`` itself."""
    text = url.rstrip("/")
    while text.lower().endswith("/v1"):
        text = text[:-3].rstrip("/")
    return text
