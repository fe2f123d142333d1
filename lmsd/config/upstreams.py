"""The upstreams: one ``[[upstreams]]`` table each (or the single ``upstream`` URL)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..protocol.urls import display_url, url_name
from .parsers import (
    byte_size,
    check_keys,
    choice,
    mapping,
    named_tables,
    names,
    non_negative_int,
    positive,
    string,
    strip_api_suffix,
    url,
)

KINDS = ("auto", "lmstudio", "responses", "chat", "messages")


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
    #: Memory its loaded models may take together (bytes), over the global memory_budget;
    #: 0: the global one.
    memory_budget: int = 0

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


def _name(value: Any) -> str:
    text = string(value).strip()
    if not text or not all(c.isalnum() or c in "._-:" for c in text):
        raise ValueError(f"use letters, digits, '.', '_', '-' or ':', got {value!r}")
    return text


_ENTRY: dict[str, Callable[[Any], Any]] = {
    "name": _name, "kind": choice(*KINDS), "api_key": string, "models": names,
    "weight": positive(float), "max_concurrent": non_negative_int, "model": string,
    "model_map": mapping, "gateway": lambda value: _gateway(value),
    "memory_budget": byte_size}


def _gateway(value: Any) -> str:
    """A gateway's name for ``/upstreams`` (``smg``, ``vllm-router``); empty: not one."""
    text = string(value).strip()
    return _name(text) if text else ""


def _upstream_entry(value: Any) -> UpstreamConfig:
    if isinstance(value, str):
        value = {"url": value}
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a table or a URL, got {value!r}")
    check_keys(value, UPSTREAM_KEYS)
    if "url" not in value:
        raise ValueError("missing url")
    parsed = UpstreamConfig(url=strip_api_suffix(url(value["url"])))
    for key, parse in _ENTRY.items():
        if key in value:
            try:
                setattr(parsed, key, parse(value[key]))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{key}: {exc}") from None
    parsed.name = parsed.name or default_name(parsed.url)
    return parsed


def upstreams(value: Any) -> list[UpstreamConfig]:
    """``[[upstreams]]`` tables in TOML; ``URL,URL`` in env; ``--upstreams`` repeated."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected [[upstreams]] tables or URL,URL, got {value!r}")
    return named_tables(value, _upstream_entry, "upstreams")
