"""The settings, one section per part that reads them.

Each field is declared once, here: its default, its parser (``parsers.py``) and the line that
documents it (``lmsd serve --help``). A part receives its section, so its signature says what
it depends on. Sections are mutable on purpose: SIGHUP's reload writes the live keys into the
very section objects the running parts hold.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
from typing import Any

from ..protocol.guard import parse_hosts, parse_origins
from .models import ModelEntry, model_entries
from .parsers import (
    boolean,
    byte_size,
    choice,
    client_keys,
    host_port,
    mapping,
    names,
    non_negative_int,
    non_negative_seconds,
    path,
    positive,
    state_dir_default,
    str_list,
    string,
    url,
)
from .upstreams import UpstreamConfig, default_name, upstreams

#: The headers cluster routers read a session key from: SGLang's model gateway, vLLM
#: production-stack's session router (its usual ``--session-key``), NVIDIA Dynamo, and the
#: generic one OpenCode and others send.
AFFINITY_HEADERS = ["x-smg-routing-key", "x-user-id", "X-Dynamo-Session-ID", "x-session-id"]


@dataclass(frozen=True)
class Spec:
    """How one setting is read and documented."""

    parse: Callable[[Any], Any]
    help: str
    secret: bool = False  # masked in /status, never a command-line flag
    file_only: bool = False  # tables: only the config file (or a repeated --upstream)


def setting(default: Any, parse: Callable[[Any], Any], help: str, *,
            factory: Callable[[], Any] | None = None, secret: bool = False,
            file_only: bool = False) -> Any:
    """A section field: ``default`` (copied per instance when it is a list or dict) or
    ``factory()``, read by ``parse``, documented by ``help``."""
    meta = {"spec": Spec(parse, help, secret, file_only)}
    if factory is None and isinstance(default, list | dict):
        factory = lambda: copy.copy(default)  # noqa: E731
    if factory is not None:
        return field(default=MISSING, default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DaemonSettings:
    """Where the daemon listens and keeps its files (the supervisor)."""

    listen: str = setting("127.0.0.1:19234", host_port,
                          "where the Anthropic API (the proxy) listens")
    admin_listen: str = setting("127.0.0.1:19235", host_port,
                                "where the admin API (status, sessions, events, metrics) listens")
    tls_cert: str = setting("", path, "a PEM certificate: both ports speak https (with tls_key)")
    tls_key: str = setting("", path, "the PEM private key of tls_cert")
    drain_timeout: float = setting(30.0, positive(float),
                                   "seconds in-flight streams may finish after SIGTERM")
    state_dir: str = setting(None, path, "where the session store (SQLite) lives",
                             factory=state_dir_default)
    config: str = setting("", path, "a TOML config file")

    @property
    def listen_host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass
class AccessSettings:
    """Who may call lmsd: the guard, the client keys, the admin token."""

    admin_token: str = setting("", string, "the token the admin API asks for", secret=True)
    client_keys: dict[str, str] = setting(
        {}, client_keys, "NAME=KEY pairs: the keys clients on the network send", secret=True)
    client_keys_file: str = setting(
        "", path, "a file of NAME=KEY lines: the keys clients on the network send "
        "(client_keys in the config file, LMSD_CLIENT_KEYS; re-read on SIGHUP)")
    trusted_network: bool = setting(False, boolean,
                                    "serve the proxy off loopback without client keys: "
                                    "everyone who can reach it may use it")
    allowed_hosts: list[str] = setting(
        [], str_list(parse_hosts), "extra Host names both ports answer (comma-separated); "
        "loopback and the listen hosts always are")
    allowed_origins: list[str] = setting(
        [], str_list(parse_origins), "browser origins allowed to call lmsd (comma-separated); "
        "none by default")


@dataclass
class ClientSettings:
    """How lmsd reaches each upstream and when it gives up on one (the backends)."""

    upstream: str = setting("auto", url, "LM Studio's URL, or auto to discover it")
    upstream_api: str = setting("auto", choice("auto", "responses", "chat", "messages"),
                                "the upstream dialect: responses (chained), chat, messages "
                                "(native Anthropic), or auto to detect it")
    upstreams: list[UpstreamConfig] = setting(
        [], upstreams, "several upstreams: [[upstreams]] tables in the config file (name, url, "
        "kind, api_key, models, weight, max_concurrent, model, model_map)", file_only=True)
    upstream_api_key: str = setting("", string, "the API key sent upstream", secret=True)
    upstream_connect_timeout: float = setting(
        5.0, positive(float), "seconds to wait for a connection to the upstream")
    upstream_timeout: float = setting(600.0, positive(float),
                                      "seconds of upstream silence before a request fails")
    chaining: bool = setting(True, boolean, "send only what is new with previous_response_id "
                             "(responses dialect)")
    breaker_failures: int = setting(3, positive(int), "consecutive failures that take an "
                                    "upstream out of rotation")
    breaker_cooldown: float = setting(10.0, positive(float), "seconds an upstream stays out "
                                      "before a probe request")

    def upstream_list(self) -> list[UpstreamConfig]:
        """Every upstream: the ``[[upstreams]]`` entries, else the single ``upstream``."""
        if self.upstreams:
            return self.upstreams
        return [UpstreamConfig(url=self.upstream, name=default_name(self.upstream),
                               kind=self.upstream_api)]


@dataclass
class RouterSettings:
    """Which upstream takes a request (the router)."""

    routing: str = setting("affinity", choice("affinity", "round_robin"),
                           "affinity (keep each conversation where its cache is) or round_robin "
                           "(what a plain load balancer does: a baseline to measure against)")
    affinity_headers: list[str] = setting(
        AFFINITY_HEADERS, names, "headers that carry the session key upstream, for a "
        "cluster's router (comma-separated)")
    spill_in_flight: int = setting(0, non_negative_int, "move a session off its upstream past "
                                   "this many requests in flight there; 0: only at its "
                                   "max_concurrent")
    background_upstream: str = setting("", string, "the upstream (by name) that takes Claude "
                                       "Code's side requests (haiku-class names: titles, small "
                                       "subagents)")


@dataclass
class ModelSettings:
    """Which upstream model a client's model name means (backends, /v1/models)."""

    model: str = setting("", string, "the upstream model for every claude-* name (default: "
                         "the loaded one)")
    model_map: dict[str, str] = setting({}, mapping, "claude name to upstream model, e.g. "
                                        "opus=a,haiku=b")


@dataclass
class OnDemandSettings:
    """Models loaded when a request names them, and unloaded to make room or when idle
    (the model pool)."""

    models: list[ModelEntry] = setting(
        [], model_entries, "models on demand: [[models]] tables in the config file (name, "
        "command, health, health_timeout, env, memory, group, ttl, pinned)", file_only=True)
    memory_budget: int = setting(0, byte_size, "memory the loaded models may take together on "
                                 "each upstream, e.g. 22GiB (past it lmsd unloads the least "
                                 "recently used model first); 0: no budget")
    model_ttl: float = setting(0.0, non_negative_seconds, "seconds a model lmsd "
                               "loaded may stay unused before lmsd unloads it; 0: never")


@dataclass
class WatchSettings:
    """What the watcher enforces on the loaded models."""

    watch: bool = setting(True, boolean, "reload models loaded below min_context with a "
                          "larger context")
    min_context: int = setting(32768, positive(int), "the smallest context (tokens) the "
                               "watcher accepts for a loaded model")
    poll_interval: float = setting(5.0, positive(float), "seconds between the watcher's looks "
                                   "at the loaded models")


@dataclass
class CacheSettings:
    """Keeping conversations warm in the engine's cache (the cache keeper; the router reads
    ``active_window`` too: a session that recent holds cache where it ran)."""

    keep_warm: bool = setting(True, boolean, "keep each conversation's prefix in the engine's "
                              "cache: pin llama-server slots, save and restore them, "
                              "re-prefill after a reload or restart")
    slot_save_idle: float = setting(30.0, positive(float), "seconds a conversation's "
                                    "llama-server slot sits idle before lmsd saves it (needs "
                                    "--slot-save-path on the engine)")
    slot_save_files: int = setting(4, positive(int), "slot files lmsd keeps per upstream (each "
                                   "holds one conversation's KV: bounds the disk they take)")
    rewarm_conversations: int = setting(1, non_negative_int, "most recent conversations "
                                        "re-prefilled after a model reload or an engine or "
                                        "lmsd restart (0: none)")
    active_window: float = setting(900.0, positive(float), "seconds a session counts as "
                                   "holding cache on its upstream")


@dataclass
class FrontSettings:
    """How the fronts read a request and answer it."""

    max_body_bytes: int = setting(32 * 1024 * 1024, positive(int),
                                  "the largest request body accepted")
    max_tokens_cap: int = setting(0, non_negative_int, "cap on a request's max_tokens; 0: no cap")
    ping_interval: float = setting(10.0, positive(float), "seconds between SSE pings while the "
                                   "upstream is silent")
    strip_billing_header: bool = setting(True, boolean, "drop Claude Code's per-request billing "
                                         "line from the system prompt so the prefix cache keeps "
                                         "hitting")
    chat_reasoning: bool = setting(False, boolean, "send the model's reasoning to "
                                   "/v1/chat/completions clients as delta.reasoning_content "
                                   "(off: reasoning is not shown)")
    repair_tool_calls: bool = setting(True, boolean, "turn a tool call the model printed as "
                                      "text (Qwen XML, Hermes JSON, ...) into a real call of a "
                                      "declared tool")


@dataclass
class SessionSettings:
    """How much the session store keeps."""

    session_max_nodes: int = setting(10_000, positive(int),
                                     "the most chain nodes the session store keeps")
    session_ttl: float = setting(7 * 86400.0, positive(float),
                                 "seconds an unused chain node is kept")


@dataclass
class RecordSettings:
    """What the recorder writes, and how much of it it keeps."""

    record_sessions: list[str] = setting(
        [], names, "sessions whose exchanges are recorded from the start, comma-separated "
        "(`lmsd record SESSION` starts one while running)")
    record_max_bytes: int = setting(200 * 1024 * 1024, positive(int), "bytes "
                                    "state_dir/recordings may take; the oldest files go first")
    record_max_age: float = setting(7 * 86400.0, positive(float),
                                    "seconds a recording is kept")


@dataclass
class LogSettings:
    """Where the log goes and in what form."""

    log_level: str = setting("info", choice("debug", "info", "warning", "error"),
                             "the lowest level of log lines on stderr")
    log_format: str = setting("auto", choice("auto", "text", "json"),
                              "text, json, or auto (JSON under journald or launchd)")
    log_file: str = setting("", path, "write the log to this file instead of stderr, rotated "
                            "by size (the launchd agent's log); empty: stderr")
    log_max_bytes: int = setting(10 * 1024 * 1024, positive(int),
                                 "bytes log_file may reach before it is rotated")
    log_backups: int = setting(3, non_negative_int,
                               "rotated log files kept (log_file.1, .2, ...)")
