"""A small async wrapper around LM Studio's ``lms`` CLI.

Commands run from argument lists (never a shell) under a timeout; on timeout the
process group is killed and LmsError is raised.

Only ``lms server status`` is free of side effects: it reads
``<LM Studio home>/.internal/http-server-config.json`` and probes
``GET /lmstudio-greeting``. ``lms ps``, ``lms load``, ``lms unload`` and most other
commands connect through lms's createClient, which LAUNCHES LM Studio (or llmster)
when it is not running; callers must only use them once they know the server is up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..processes import run_bounded

DEFAULT_TIMEOUT = 10.0

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def lmstudio_home(home: Path | None = None, *, environ: Mapping[str, str] | None = None) -> Path:
    """LM Studio's home directory, resolved as LM Studio does (without writing anything).

    ``$LMSTUDIO_HOME`` when set; else the path in ``~/.lmstudio-home-pointer``; else
    ``~/.cache/lm-studio`` if it exists; else ``~/.lmstudio``. ``~`` is ``home`` if given,
    else ``$HOME`` from ``environ`` (default ``os.environ``), else ``Path.home()``.
    """
    env = os.environ if environ is None else environ
    if env.get("LMSTUDIO_HOME"):
        return Path(env["LMSTUDIO_HOME"])
    if home is None:
        home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    try:
        pointed = (home / ".lmstudio-home-pointer").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        pointed = ""
    if pointed:
        return Path(pointed)
    cache = home / ".cache" / "lm-studio"
    return cache if cache.is_dir() else home / ".lmstudio"


class LmsError(Exception):
    """An ``lms`` command failed, timed out, or printed something unusable."""


class LmsNotFound(LmsError):
    """No ``lms`` binary: not at the given path, not on PATH, not in LM Studio's home."""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in _ANSI.sub("", text).splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _parse_json(text: str) -> Any:
    """The JSON value ``lms --json`` printed: all of stdout, else its last JSON line."""
    text = _ANSI.sub("", text).strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


class LmsCli:
    """Runs ``lms`` commands.

    The binary is ``path`` when given, else ``lms`` on PATH, else
    ``$LMSTUDIO_HOME/bin/lms`` (see :func:`lmstudio_home`). ``env``
    is layered over ``os.environ`` for the child, and its PATH and LMSTUDIO_HOME
    also steer the lookup.
    """

    def __init__(
        self,
        path: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.env = {**os.environ, **(env or {})}

    def locate(self) -> str | None:
        """The binary to run, or None when there is none."""
        if self.path:
            return shutil.which(self.path, path=self.env.get("PATH"))
        found = shutil.which("lms", path=self.env.get("PATH", os.defpath))
        if found:
            return found

        return shutil.which(str(lmstudio_home(environ=self.env) / "bin" / "lms"))

    @property
    def available(self) -> bool:
        return self.locate() is not None

    async def run(
        self, *args: str, timeout: float | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``lms *args``; the completed process, whatever its exit status.

        Raises LmsNotFound, or LmsError when it cannot start or outlives the timeout.
        """
        binary = self.locate()
        if binary is None:
            where = f"at {self.path!r}" if self.path else "on PATH or in LM Studio's home"
            raise LmsNotFound(f"the lms CLI was not found {where}; is LM Studio installed?")
        limit = self.timeout if timeout is None else timeout
        try:
            return await run_bounded([binary, *args], timeout=limit, env=self.env)
        except TimeoutError:
            raise LmsError(f"`lms {' '.join(args)}` did not finish within {limit:g} s; "
                           f"killed it") from None
        except OSError as exc:
            raise LmsError(f"could not run {binary}: {exc}") from None

    async def _checked(self, *args: str, timeout: float | None = None) -> str:
        """Run ``lms *args``; its stdout. A non-zero exit raises LmsError."""
        done = await self.run(*args, timeout=timeout)
        stdout = done.stdout.decode("utf-8", "replace")
        if done.returncode != 0:
            detail = _last_line(done.stderr.decode("utf-8", "replace")) or _last_line(stdout)
            raise LmsError(
                f"`lms {' '.join(args)}` failed (exit {done.returncode})"
                + (f": {detail}" if detail else "")
            )
        return stdout

    async def server_status(self) -> dict[str, Any] | None:
        """``lms server status --json --quiet``: e.g. ``{"running": true, "port": 1234}``.

        None when it printed no JSON object. Side-effect free: this never starts
        LM Studio (it only reads the server config file and probes the greeting).
        """
        data = _parse_json(await self._checked("server", "status", "--json", "--quiet"))
        return data if isinstance(data, dict) else None

    async def ps(self) -> list[dict[str, Any]]:
        """``lms ps --json``: the loaded models (``identifier``, ``modelKey``,
        ``contextLength``, ``maxContextLength``, ``status``, ``type``, ...).

        LAUNCHES LM Studio when it is not running: call only when the server is up.
        """
        data = _parse_json(await self._checked("ps", "--json"))
        if not isinstance(data, list):
            raise LmsError("`lms ps --json` did not print a JSON list")
        return [entry for entry in data if isinstance(entry, dict)]

    async def load(
        self,
        model_key: str,
        *,
        context_length: int,
        identifier: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """``lms load <model_key> --exact -c <N> -y [--identifier <id>]``.

        ``timeout`` overrides the default (large models take longer than 10 s to load).
        LAUNCHES LM Studio when it is not running: call only when the server is up.
        """
        args = ["load", model_key, "--exact", "-c", str(context_length), "-y"]
        if identifier is not None:
            args += ["--identifier", identifier]
        await self._checked(*args, timeout=timeout)

    async def unload(self, identifier: str) -> None:
        """``lms unload <identifier>``.

        LAUNCHES LM Studio when it is not running: call only when the server is up.
        """
        await self._checked("unload", identifier)

