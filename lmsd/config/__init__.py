"""Settings: defaults < config file (TOML) < environment (``LMSD_*``) < command-line flags.

Every setting has the same name everywhere: ``ping_interval`` in the file,
``LMSD_PING_INTERVAL`` in the environment, ``--ping-interval`` on the command line.
The file is ``--config``/``LMSD_CONFIG``, else ``$XDG_CONFIG_HOME/lmsd/lmsd.toml``
(``~/.config/lmsd/lmsd.toml``) when it exists. A bad value stops startup with one line
naming the key.

- ``parsers.py``: the value parsers; ``upstreams.py``: the ``[[upstreams]]`` tables.
- ``sections.py``: each setting, declared once (default, parser, help) in the section of the
  part that reads it; ``settings.py``: ``Settings``, the sections together.
- ``load.py``: merging the sources, and the checks across keys.
"""

from .load import ENV_PREFIX, default_config_path, env_name, load_settings
from .parsers import ConfigError, did_you_mean, strip_api_suffix
from .sections import (
    AFFINITY_HEADERS,
    AccessSettings,
    CacheSettings,
    ClientSettings,
    DaemonSettings,
    FrontSettings,
    LogSettings,
    ModelSettings,
    RecordSettings,
    RouterSettings,
    SessionSettings,
    WatchSettings,
)
from .settings import (
    FIELDS,
    FILE_ONLY,
    PARSERS,
    SECRET_KEYS,
    SECTIONS,
    Settings,
    configured_upstreams,
    redacted,
)
from .upstreams import KINDS, UPSTREAM_KEYS, UpstreamConfig, default_name

__all__ = [
    "AFFINITY_HEADERS", "ENV_PREFIX", "FIELDS", "FILE_ONLY", "KINDS", "PARSERS", "SECRET_KEYS",
    "SECTIONS", "UPSTREAM_KEYS", "AccessSettings", "CacheSettings", "ClientSettings",
    "ConfigError", "DaemonSettings", "FrontSettings", "LogSettings", "ModelSettings",
    "RecordSettings", "RouterSettings", "SessionSettings", "Settings", "UpstreamConfig",
    "WatchSettings", "configured_upstreams", "default_config_path", "default_name",
    "did_you_mean", "env_name", "load_settings", "redacted", "strip_api_suffix",
]
