"""Settings: defaults < config file (TOML) < environment (``LMSD_*``) < command-line flags.

Every setting has the same name everywhere: ``ping_interval`` in the file,
``LMSD_PING_INTERVAL`` in the environment, ``--ping-interval`` on the command line.
The file is ``--config``/``LMSD_CONFIG``, else ``$XDG_CONFIG_HOME/lmsd/lmsd.toml``
(``~/.config/lmsd/lmsd.toml``) when it exists. A bad value stops startup with one line
naming the key.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .protocol.client_keys import parse_key_lines, parse_pairs
from .protocol.guard import parse_hosts, parse_origins
from .protocol.urls import display_url, url_name


class ConfigError(Exception):
    """A setting is wrong; the message names the key."""


def _state_dir_default() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                              "state")
    return os.path.join(base, "lmsd")


def _host_port(value: Any) -> str:
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return text


def _url(value: Any) -> str:
    text = str(value).strip().rstrip("/")
    if text == "auto":
        return text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http(s) URL or 'auto', got {display_url(text)!r}")
    return text


def _positive(kind: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("expected a number, got a boolean")
        number = kind(value)
        if number <= 0:
            raise ValueError(f"must be positive, got {value!r}")
        return number
    return parse


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number, got a boolean")
    number = int(value)
    if number < 0:
        raise ValueError(f"must be 0 (off) or more, got {value!r}")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")
        return text
    return parse


def _mapping(value: Any) -> dict[str, str]:
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


def _list(parse: Callable[[list[str]], list[str]]) -> Callable[[Any], list[str]]:
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


def _client_keys(value: Any) -> dict[str, str]:
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


def _string(value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"expected a string, got {value!r}")
    return str(value)


def _path(value: Any) -> str:
    return os.path.expanduser(_string(value))


KINDS = ("auto", "lmstudio", "responses", "chat", "messages")
#: The headers cluster routers read a session key from: SGLang's model gateway, vLLM
#: production-stack's session router (its usual ``--session-key``), NVIDIA Dynamo, and the
#: generic one OpenCode and others send.
AFFINITY_HEADERS = ["x-smg-routing-key", "x-user-id", "X-Dynamo-Session-ID", "x-session-id"]


@dataclass
class UpstreamConfig:
    """One ``[[upstreams]]`` entry (or the single ``upstream`` setting)."""

    url: str
    name: str = ""
    kind: str = "auto"  # lmstudio is responses; auto decides when it first answers
    api_key: str = ""  # else the global upstream_api_key
    models: list[str] = field(default_factory=list)  # else discovered from /v1/models
    weight: float = 1.0
    max_concurrent: int = 0  # 0: no limit of lmsd's own
    model: str = ""  # the target of claude-* names here, else the global model
    model_map: dict[str, str] = field(default_factory=dict)  # over the global one
    #: A cluster's gateway (SMG, vLLM's router) in front of many replicas: it owns
    #: placement, so lmsd pins no slots and saves no slot files through it, and one
    #: replica's failure does not take the whole gateway out of rotation.
    gateway: str = ""

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["api_key"] = "***" if self.api_key else ""
        data["url"] = display_url(self.url)
        return data


def default_name(url: str) -> str:
    """``host:port`` of ``url`` (never its ``user:password@``): how an upstream without a
    name is shown, and so its metric labels, store rows and slot file names."""
    if url == "auto":
        return "lmstudio"
    return url_name(url)


UPSTREAM_KEYS = {f for f in UpstreamConfig.__dataclass_fields__}


def _upstream_entry(value: Any) -> UpstreamConfig:
    if isinstance(value, str):
        value = {"url": value}
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a table or a URL, got {value!r}")
    unknown = sorted(set(value) - UPSTREAM_KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}{did_you_mean(unknown[0], UPSTREAM_KEYS)} "
                         f"(known: {', '.join(sorted(UPSTREAM_KEYS))})")
    if "url" not in value:
        raise ValueError("missing url")
    parsed = UpstreamConfig(url=strip_api_suffix(_url(value["url"])))
    parsers: dict[str, Callable[[Any], Any]] = {
        "name": _name, "kind": _choice(*KINDS), "api_key": _string,
        "models": _list(lambda items: [i.strip() for i in items if i.strip()]),
        "weight": _positive(float), "max_concurrent": _non_negative_int, "model": _string,
        "model_map": _mapping, "gateway": _gateway}
    for key, parse in parsers.items():
        if key in value:
            try:
                setattr(parsed, key, parse(value[key]))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{key}: {exc}") from None
    parsed.name = parsed.name or default_name(parsed.url)
    return parsed


def _name(value: Any) -> str:
    text = _string(value).strip()
    if not text or not all(c.isalnum() or c in "._-:" for c in text):
        raise ValueError(f"use letters, digits, '.', '_', '-' or ':', got {value!r}")
    return text


def _gateway(value: Any) -> str:
    """A gateway's name for ``/upstreams`` (``smg``, ``vllm-router``); empty: not one."""
    text = _string(value).strip()
    return _name(text) if text else ""


def _upstreams(value: Any) -> list[UpstreamConfig]:
    """``[[upstreams]]`` tables in TOML; ``URL,URL`` in env; ``--upstreams`` repeated."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected [[upstreams]] tables or URL,URL, got {value!r}")
    entries = []
    for n, item in enumerate(value):
        try:
            entries.append(_upstream_entry(item))
        except ValueError as exc:
            raise ValueError(f"[{n}] {exc}") from None
    names = [e.name for e in entries]
    if dupe := next((n for n in names if names.count(n) > 1), None):
        raise ValueError(f"two upstreams are named {dupe!r}: give each a unique name")
    return entries


@dataclass
class Settings:
    listen: str = "127.0.0.1:19234"
    admin_listen: str = "127.0.0.1:19235"
    upstream: str = "auto"
    upstream_api: str = "auto"
    upstreams: list[UpstreamConfig] = field(default_factory=list)  # several; see below
    background_upstream: str = ""  # takes Claude Code's side requests (haiku, titles)
    affinity_headers: list[str] = field(default_factory=lambda: list(AFFINITY_HEADERS))
    routing: str = "affinity"  # or round_robin: what a plain balancer does (a baseline)
    spill_in_flight: int = 0  # move a pinned session past this many requests in flight
    active_window: float = 900.0  # a session this recently active holds cache upstream
    breaker_failures: int = 3  # consecutive failures that take an upstream out
    breaker_cooldown: float = 10.0  # seconds out before a half-open probe
    keep_warm: bool = True  # steer slots, save/restore them, re-warm after a lost cache
    slot_save_idle: float = 30.0  # seconds a slot sits unsaved before it is saved
    slot_save_files: int = 4  # slot files per upstream (bounds the disk they take)
    rewarm_conversations: int = 1  # conversations re-prefilled after the cache is lost
    state_dir: str = field(default_factory=_state_dir_default)
    model: str = ""
    model_map: dict[str, str] = field(default_factory=dict)
    strip_billing_header: bool = True
    chat_reasoning: bool = False
    repair_tool_calls: bool = True
    chaining: bool = True
    session_max_nodes: int = 10_000
    session_ttl: float = 7 * 86400.0
    record_sessions: list[str] = field(default_factory=list)  # sessions recorded from start
    record_max_bytes: int = 200 * 1024 * 1024  # state_dir/recordings is pruned past this
    record_max_age: float = 7 * 86400.0  # recordings older than this are removed
    ping_interval: float = 10.0
    max_tokens_cap: int = 0
    watch: bool = True
    min_context: int = 32768
    poll_interval: float = 5.0
    drain_timeout: float = 30.0
    max_body_bytes: int = 32 * 1024 * 1024
    upstream_connect_timeout: float = 5.0
    upstream_timeout: float = 600.0
    upstream_api_key: str = ""
    admin_token: str = ""
    client_keys: dict[str, str] = field(default_factory=dict)  # name -> key; see clients
    client_keys_file: str = ""  # NAME=KEY lines, read with the config (SIGHUP too)
    trusted_network: bool = False  # serve the proxy off loopback without client keys
    tls_cert: str = ""  # PEM certificate (chain): both ports speak https
    tls_key: str = ""  # its PEM private key
    allowed_hosts: list[str] = field(default_factory=list)
    allowed_origins: list[str] = field(default_factory=list)
    log_level: str = "info"
    log_format: str = "auto"
    log_file: str = ""  # the log goes here instead of stderr, rotated past log_max_bytes
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 3
    config: str = ""

    def __post_init__(self) -> None:
        # What load_settings corrected, for the daemon to log and doctor to show
        # (not a setting: it is neither compared on reload nor shown as one).
        self.notes: list[tuple[str, str]] = []  # (key, what was done)

    def upstream_list(self) -> list[UpstreamConfig]:
        """Every upstream: the ``[[upstreams]]`` entries, else the single ``upstream``."""
        if self.upstreams:
            return self.upstreams
        return [UpstreamConfig(url=self.upstream, name=default_name(self.upstream),
                               kind=self.upstream_api)]

    @property
    def listen_host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


PARSERS: dict[str, Callable[[Any], Any]] = {
    "listen": _host_port,
    "admin_listen": _host_port,
    "upstream": _url,
    "upstream_api": _choice("auto", "responses", "chat", "messages"),
    "upstreams": _upstreams,
    "background_upstream": _string,
    "affinity_headers": _list(lambda items: [i.strip() for i in items if i.strip()]),
    "routing": _choice("affinity", "round_robin"),
    "spill_in_flight": _non_negative_int,
    "active_window": _positive(float),
    "breaker_failures": _positive(int),
    "breaker_cooldown": _positive(float),
    "keep_warm": _bool,
    "slot_save_idle": _positive(float),
    "slot_save_files": _positive(int),
    "rewarm_conversations": _non_negative_int,
    "state_dir": _path,
    "model": _string,
    "model_map": _mapping,
    "strip_billing_header": _bool,
    "chat_reasoning": _bool,
    "repair_tool_calls": _bool,
    "chaining": _bool,
    "session_max_nodes": _positive(int),
    "session_ttl": _positive(float),
    "record_sessions": _list(lambda items: [i.strip() for i in items if i.strip()]),
    "record_max_bytes": _positive(int),
    "record_max_age": _positive(float),
    "ping_interval": _positive(float),
    "max_tokens_cap": _non_negative_int,
    "watch": _bool,
    "min_context": _positive(int),
    "poll_interval": _positive(float),
    "drain_timeout": _positive(float),
    "max_body_bytes": _positive(int),
    "upstream_connect_timeout": _positive(float),
    "upstream_timeout": _positive(float),
    "upstream_api_key": _string,
    "admin_token": _string,
    "client_keys": _client_keys,
    "client_keys_file": _path,
    "trusted_network": _bool,
    "tls_cert": _path,
    "tls_key": _path,
    "allowed_hosts": _list(parse_hosts),
    "allowed_origins": _list(parse_origins),
    "log_level": _choice("debug", "info", "warning", "error"),
    "log_format": _choice("auto", "text", "json"),
    "log_file": _path,
    "log_max_bytes": _positive(int),
    "log_backups": _non_negative_int,
    "config": _path,
}
SECRET_KEYS = frozenset({"upstream_api_key", "admin_token", "client_keys"})
FILE_ONLY = frozenset({"upstreams"})  # tables: only the config file (or a repeated --upstream)
ENV_PREFIX = "LMSD_"


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def default_config_path(environ: Mapping[str, str]) -> Path | None:
    """``$XDG_CONFIG_HOME/lmsd/lmsd.toml``, else ``$HOME/.config/lmsd/lmsd.toml``."""
    xdg = environ.get("XDG_CONFIG_HOME", "")
    if os.path.isabs(xdg):
        base = Path(xdg)
    elif environ.get("HOME"):
        base = Path(environ["HOME"]) / ".config"
    else:
        return None
    return base / "lmsd" / "lmsd.toml"


def strip_api_suffix(url: str) -> str:
    """``http://host:1234/v1`` (the OpenAI base-URL form) -> ``http://host:1234``:
    lmsd adds ``/v1/...`` and ``/api/...`` itself."""
    text = url.rstrip("/")
    while text.lower().endswith("/v1"):
        text = text[:-3].rstrip("/")
    return text


def _parse_upstream(value: Any, source: str) -> dict[str, Any]:
    """``--upstream`` given several times (or ``URL,URL`` in the environment) means
    several upstreams; once, the one upstream as always."""
    urls = value if isinstance(value, list) else str(value).split(",")
    urls = [u for u in urls if str(u).strip()]
    if len(urls) > 1:
        return {"upstreams": _parse("upstreams", urls, source)}
    return {"upstream": _parse("upstream", urls[0] if urls else value, source)}


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'min_context'?"`` for a misspelt key, else nothing."""
    close = difflib.get_close_matches(name.replace("-", "_").lower(), sorted(known), n=1,
                                      cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def _parse(key: str, value: Any, source: str) -> Any:
    try:
        return PARSERS[key](value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source} {key}: {exc}") from None


def load_settings(
    flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Merge the sources; raise ConfigError naming the first bad key."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_path = flags.get("config") or environ.get(env_name("config"))
    if config_path:
        values.update(_read_file(Path(os.path.expanduser(config_path))))
    elif (default := default_config_path(environ)) is not None and default.is_file():
        values.update(_read_file(default))
        values["config"] = str(default)
    for key in PARSERS:
        if env_name(key) in environ:
            source = f"environment {env_name(key)}:"
            values.update(_parse_upstream(environ[env_name(key)], source) if key ==
                          "upstream" else {key: _parse(key, environ[env_name(key)], source)})
    for key, value in flags.items():
        if key not in PARSERS:
            raise ConfigError(f"unknown option {key}{did_you_mean(key, PARSERS)}")
        values.update(_parse_upstream(value, "option") if key == "upstream" else
                      {key: _parse(key, value, "option")})
    settings = Settings()
    for f in fields(Settings):
        if f.name in values:
            setattr(settings, f.name, values[f.name])
    _check_upstreams(settings)
    _read_client_keys(settings)
    _check_tls(settings)
    if settings.upstream != "auto" and (base := strip_api_suffix(settings.upstream)) != \
            settings.upstream:
        settings.notes.append(("upstream", f"upstream {display_url(settings.upstream)} ends "
                               f"in /v1: using {display_url(base)} (lmsd adds the API paths "
                               "itself)"))
        settings.upstream = base
    return settings


def _check_upstreams(settings: Settings) -> None:
    names = [u.name for u in settings.upstream_list()]
    if settings.background_upstream and settings.background_upstream not in names:
        raise ConfigError(f"background_upstream: {settings.background_upstream!r} is not an "
                          f"upstream (there are: {', '.join(names)})")


def _read_client_keys(settings: Settings) -> None:
    """Add ``client_keys_file``'s keys (kept out of the main config) to ``client_keys``."""
    path = settings.client_keys_file
    if not path:
        return
    source = f"client_keys_file {path}:"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source} {exc}") from None
    try:
        from_file = parse_pairs(parse_key_lines(text))
        settings.client_keys = parse_pairs([*settings.client_keys.items(),
                                            *from_file.items()])
    except ValueError as exc:
        raise ConfigError(f"{source} {exc}") from None


def _check_tls(settings: Settings) -> None:
    """Both files or neither, and both readable: a typo stops startup, not the first client."""
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ConfigError("tls_cert and tls_key: set both (the certificate and its private "
                          "key) or neither")
    for key in ("tls_cert", "tls_key"):
        path = getattr(settings, key)
        if not path:
            continue
        try:
            head = Path(path).read_bytes()[:4096]
        except OSError as exc:
            raise ConfigError(f"{key} {path}: {exc.strerror or exc}") from None
        if b"-----BEGIN " not in head:
            raise ConfigError(f"{key} {path}: not a PEM file (expected -----BEGIN ...)")


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None
    values = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in PARSERS or name == "config":
            raise ConfigError(f"config file {path}: unknown key {key!r}"
                              f"{did_you_mean(name, set(PARSERS) - {'config'})}")
        values[name] = _parse(name, value, f"config file {path}:")
    return values


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings as a dict with secrets masked, for /status and logs."""
    data = {f.name: getattr(settings, f.name) for f in fields(Settings)}
    for key in SECRET_KEYS:
        data[key] = "***" if data[key] else ""
    data["upstream"] = display_url(settings.upstream)
    data["client_keys"] = {name: "***" for name in settings.client_keys}  # names only
    data["upstreams"] = [u.to_json() for u in settings.upstreams]
    return data
