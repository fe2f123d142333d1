"""``Settings``: every section together, as the loader builds it and the supervisor hands it
out, one section to each part."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..protocol.urls import display_url
from .sections import (
    AccessSettings,
    CacheSettings,
    ClientSettings,
    DaemonSettings,
    FrontSettings,
    LogSettings,
    ModelSettings,
    OnDemandSettings,
    RecordSettings,
    RouterSettings,
    SessionSettings,
    Spec,
    WatchSettings,
)
from .upstreams import UpstreamConfig

#: Each section, by the name ``Settings`` holds it under.
SECTIONS: dict[str, type] = {
    "daemon": DaemonSettings, "client": ClientSettings, "router": RouterSettings,
    "naming": ModelSettings, "on_demand": OnDemandSettings, "watcher": WatchSettings,
    "cache": CacheSettings,
    "fronts": FrontSettings, "sessions": SessionSettings, "recorder": RecordSettings,
    "access": AccessSettings, "logs": LogSettings,
}


@dataclass(frozen=True)
class Field:
    """One setting: its name (the same in the file, ``LMSD_*`` and ``--flag``), its section."""

    name: str
    section: str
    spec: Spec


#: Every setting by name, section by section.
FIELDS: dict[str, Field] = {
    f.name: Field(f.name, section, f.metadata["spec"])
    for section, kind in SECTIONS.items() for f in fields(kind)}
PARSERS = {name: f.spec.parse for name, f in FIELDS.items()}
SECRET_KEYS = frozenset(name for name, f in FIELDS.items() if f.spec.secret)
FILE_ONLY = frozenset(name for name, f in FIELDS.items() if f.spec.file_only)


class Settings:
    """Every section (``settings.cache``, ``settings.watcher``, ...). A flat name
    (``settings.keep_warm``) reads and writes its section's field: the loader, SIGHUP's reload
    and the tests speak in setting names; parts get their section."""

    daemon: DaemonSettings
    client: ClientSettings
    router: RouterSettings
    naming: ModelSettings
    on_demand: OnDemandSettings
    watcher: WatchSettings
    cache: CacheSettings
    fronts: FrontSettings
    sessions: SessionSettings
    recorder: RecordSettings
    access: AccessSettings
    logs: LogSettings

    def __init__(self, **values: Any) -> None:
        for section, kind in SECTIONS.items():
            setattr(self, section, kind())
        # What load_settings corrected, for the daemon to log and doctor to show
        # (not a setting: it is neither compared on reload nor shown as one).
        self.notes: list[tuple[str, str]] = []  # (key, what was done)
        for key, value in values.items():
            if key not in FIELDS:
                raise TypeError(f"Settings has no setting {key!r}")
            setattr(self, key, value)

    def values(self) -> dict[str, Any]:
        """Every setting by name (not redacted)."""
        return {name: getattr(self, name) for name in FIELDS}

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (setting names); the sections are new objects."""
        return Settings(**{**self.values(), **changes})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and self.values() == other.values()

    def __repr__(self) -> str:
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in self.values().items()) + ")"

    def upstream_list(self) -> list[UpstreamConfig]:
        return self.client.upstream_list()

    @property
    def listen_host_port(self) -> tuple[str, int]:
        return self.daemon.listen_host_port


def _forward(section: str, name: str) -> property:
    def get(settings: Settings) -> Any:
        return getattr(getattr(settings, section), name)

    def put(settings: Settings, value: Any) -> None:
        setattr(getattr(settings, section), name, value)
    return property(get, put, doc=FIELDS[name].spec.help)


for _field in FIELDS.values():
    setattr(Settings, _field.name, _forward(_field.section, _field.name))


def configured_upstreams(settings: Settings) -> list[UpstreamConfig]:
    """The upstreams lmsd finds or is given (the daemon builds them, ``lmsd doctor`` checks
    them): none when ``[[models]]`` name commands and neither ``upstream`` nor
    ``[[upstreams]]`` says otherwise (the default ``auto`` would look for an LM Studio the
    user does not run: the started models are the upstreams)."""
    started = any(m.started for m in settings.models)
    if started and not settings.upstreams and settings.upstream == "auto":
        return []
    return settings.upstream_list()


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings as a dict with secrets masked, for /status and logs."""
    data = settings.values()
    for key in SECRET_KEYS:
        data[key] = "***" if data[key] else ""
    data["upstream"] = display_url(settings.upstream)
    data["client_keys"] = {name: "***" for name in settings.client_keys}  # names only
    data["upstreams"] = [u.to_json() for u in settings.upstreams]
    data["models"] = [m.to_json() for m in settings.models]
    return data
