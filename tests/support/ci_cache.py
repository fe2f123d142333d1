"""Where ``.ci/run`` keeps what takes minutes to fetch or build: outside the clone
(``$LMSD_CI_CACHE``, else ``~/.cache/lmsd-ci``), one directory per pinned version, so a
fresh clone (CI's, or a developer's test run) finds the CLIs and the engines already there."""

from __future__ import annotations

import os
from pathlib import Path


def ci_cache() -> Path:
    if explicit := os.environ.get("LMSD_CI_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lmsd-ci"


def cached(pattern: str, fallback: Path) -> Path:
    """The newest cached file matching ``pattern`` (a glob under the cache), else
    ``fallback`` (where an older ``.ci/run`` put it, inside the clone)."""
    found = sorted(ci_cache().glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else fallback
