"""``load_settings``: defaults < config file (TOML) < environment (``LMSD_*``) < flags."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..protocol.client_keys import parse_key_lines, parse_pairs
from ..protocol.urls import display_url
from .parsers import ConfigError, did_you_mean, strip_api_suffix
from .settings import PARSERS, Settings, configured_upstreams

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


def _parse_upstream(value: Any, source: str) -> dict[str, Any]:
    """``--upstream`` given several times (or ``URL,URL`` in the environment) means
    several upstreams; once, the one upstream as always."""
    urls = value if isinstance(value, list) else str(value).split(",")
    urls = [u for u in urls if str(u).strip()]
    if len(urls) > 1:
        return {"upstreams": _parse("upstreams", urls, source)}
    return {"upstream": _parse("upstream", urls[0] if urls else value, source)}


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
    settings = Settings(**values)
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
    """A started model is an upstream of its own, named as its model: a name both a
    ``[[models]]`` and an ``[[upstreams]]`` table take would be two upstreams of one name
    (their metrics, store rows and slot files mixed)."""
    names = [u.name for u in configured_upstreams(settings)]
    for model in (m for m in settings.models if m.started):
        clash = next((u for u in configured_upstreams(settings) if u.name == model.name), None)
        if clash is not None:
            raise ConfigError(f"[[models]] {model.name!r} (started by lmsd) and the upstream "
                              f"{clash.name!r} at {display_url(clash.url)} take one name: "
                              "rename one (a started model is an upstream of its own, "
                              "named as its model)")
        names.append(model.name)
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
