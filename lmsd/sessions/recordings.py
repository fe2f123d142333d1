"""Which sessions record their exchanges (issue 16), and the files they are kept in.

The client tap (``fronts/tap.py``) hands each finished exchange to ``Recorder.finish``;
only one whose session records is kept. Files go to
``state_dir/recordings/<session>/<time>-<n>.json``, written in a worker thread, and the
oldest go when the directory passes ``record_max_bytes`` or ``record_max_age``. The
format and its redaction are ``protocol/recording.py``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import stat
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import trio

from ..log import event
from ..protocol import recording as fmt

DEFAULT_MAX_BYTES = 200 * 1024 * 1024
DEFAULT_MAX_AGE = 7 * 24 * 3600.0

_numbers = itertools.count(1)


class Recorder:
    """Which sessions record, and where their exchanges go. ``sink`` instead of files
    takes every exchange of every session (replay records its own run so)."""

    def __init__(self, directory: Path | None, sessions: Iterable[str] = (), *,
                 max_bytes: int = DEFAULT_MAX_BYTES, max_age: float = DEFAULT_MAX_AGE,
                 sink: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.directory = directory
        self.sessions = set(sessions)
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.sink = sink

    @property
    def active(self) -> bool:
        return bool(self.sessions) or self.sink is not None

    def start(self, session: str) -> None:
        self.sessions.add(session)

    def stop(self, session: str) -> None:
        self.sessions.discard(session)

    async def finish(self, exchange: dict[str, Any], body: bytes) -> None:
        """Keep ``exchange`` with the client's ``body`` if its session records. A request
        is served whatever happens here: a failure to record it is one warning line."""
        if self.sink is None and exchange.get("session") not in self.sessions:
            return  # another session's request: its body is not even parsed
        try:
            exchange["client"]["body"] = fmt.redact(fmt.as_body(body))
            await self._keep(exchange)
        except Exception as exc:  # recording must never fail the request
            event("session.record_failed", level=30, session=exchange.get("session"),
                  path=exchange["client"]["path"][:200],
                  error=f"{type(exc).__name__}: {exc}"[:300])

    async def _keep(self, exchange: dict[str, Any]) -> None:
        if self.sink is not None:
            self.sink(exchange)
        elif exchange.get("session") in self.sessions and self.directory is not None:
            try:
                path = await trio.to_thread.run_sync(self._write, exchange)
            except OSError as exc:
                event("session.recorded", level=30, session=exchange["session"],
                      error=str(exc))
                return
            event("session.recorded", session=exchange["session"], path=str(path),
                  bytes=path.stat().st_size if path.exists() else 0)

    def _write(self, exchange: dict[str, Any]) -> Path:
        """The exchange as a new file, private (0600 in a 0700 folder, whatever the umask:
        it holds the conversation), then the oldest pruned."""
        assert self.directory is not None
        session = str(exchange["session"])
        folder = self.directory / safe_name(session)
        for place in (self.directory, folder):
            place.mkdir(parents=True, exist_ok=True, mode=0o700)
            if place.is_symlink() or not place.is_dir():
                raise OSError(f"{place} is not a directory of lmsd's own")
            place.chmod(0o700)
        _write_private(folder / SESSION_FILE, session.encode("utf-8"), replace=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(exchange["recorded_at"]))
        data = json.dumps(exchange, ensure_ascii=False, indent=1).encode("utf-8")
        for _ in range(100):  # a name another lmsd took: the next number
            path = folder / f"{stamp}-{next(_numbers):04d}.json"
            try:
                _write_private(path, data)
            except FileExistsError:
                continue
            break
        self.prune()
        return path

    def prune(self, now: float | None = None) -> None:
        """Drop recordings past ``max_age``, then the oldest while past ``max_bytes``.
        Only regular files directly in a session folder go: no symlink is followed (a
        link to a folder elsewhere must not lose that folder's files)."""
        now = time.time() if now is None else now
        found = sorted(self._found(), key=lambda item: item[2].st_mtime)
        total = sum(info.st_size for _, _, info in found)
        for folder, name, info in found:
            if now - info.st_mtime > self.max_age or total > self.max_bytes:
                total -= info.st_size
                _unlink_regular(self.directory / folder, name)  # type: ignore[operator]

    def _found(self) -> list[tuple[str, str, os.stat_result]]:
        """(folder, file name, lstat) of each recording: regular ``*.json`` files in the
        real (not symlinked) folders of the real recordings directory."""
        if self.directory is None:
            return []
        found = []
        for folder, _ in _real_entries(self.directory, stat.S_ISDIR):
            for name, info in _real_entries(self.directory / folder, stat.S_ISREG):
                if name.endswith(".json"):
                    found.append((folder, name, info))
        return found

    def files(self) -> list[Path]:
        if self.directory is None:
            return []
        return sorted(self.directory / folder / name for folder, name, _ in self._found())

    def status(self) -> dict[str, Any]:
        """For ``/status``: recording is available, and which sessions record."""
        return {"available": self.directory is not None, "sessions": sorted(self.sessions),
                "directory": str(self.directory) if self.directory else None}

    def listing(self) -> dict[str, Any]:
        """What the admin API shows: the sessions recording and the files kept."""
        directory, found = self.directory or Path(), sorted(self._found())
        sessions = {folder: _session_of(directory / folder, folder) for folder, _, _ in found}
        return {"recording": sorted(self.sessions),
                "directory": str(self.directory) if self.directory else None,
                "files": [{"session": sessions[folder], "path": str(directory / folder / name),
                           "bytes": info.st_size} for folder, name, info in found]}


def safe_name(session: str) -> str:
    """A session id as a directory name (ids are free text from the client), one name
    per id: an id that is already a plain name is its own name; any other is cleaned and
    gets ``+`` and a hash of the id (``a:b`` and ``a_b`` must not share a folder, and no
    plain name holds a ``+``)."""
    cleaned = "".join(c if (c.isalnum() and c.isascii()) or c in "-_." else "_"
                      for c in session)[:100]
    if cleaned == session and cleaned.strip(".") == cleaned and cleaned:
        return cleaned
    digest = hashlib.sha256(session.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{cleaned.strip('.') or '_'}+{digest}"


#: Each session folder's real session id (its name may be cleaned and hashed).
SESSION_FILE = ".session"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _write_private(path: Path, data: bytes, *, replace: bool = False) -> None:
    """``data`` as ``path``, mode 0600 whatever the umask, never through a symlink;
    FileExistsError if it exists (unless ``replace``)."""
    flags = os.O_WRONLY | os.O_CREAT | _NOFOLLOW | (os.O_TRUNC if replace else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb", closefd=False) as file:
            file.write(data)
    finally:
        os.close(fd)


def _real_entries(directory: Path, kind: Callable[[int], bool]
                  ) -> list[tuple[str, os.stat_result]]:
    """(name, lstat) of the entries of ``directory`` of ``kind`` (``stat.S_ISREG``...),
    symlinks never; nothing if ``directory`` is itself a symlink or missing."""
    try:
        if not stat.S_ISDIR(directory.lstat().st_mode):
            return []
        with os.scandir(directory) as entries:
            found = [(e.name, e.stat(follow_symlinks=False)) for e in entries]
    except OSError:
        return []
    return [(name, info) for name, info in found if kind(info.st_mode)]


def _unlink_regular(folder: Path, name: str) -> None:
    """Remove ``folder/name`` if it is a regular file in a real folder: the folder is
    opened without following a symlink, and the file removed relative to it."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW)
    except OSError:
        return
    try:
        if stat.S_ISREG(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
            os.unlink(name, dir_fd=fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _session_of(folder: Path, name: str) -> str:
    """The session id a folder holds (its ``.session`` file), else the folder's name."""
    try:
        return _read_small(folder / SESSION_FILE) or name
    except (OSError, UnicodeDecodeError):
        return name


def _read_small(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    with os.fdopen(fd, "rb") as file:
        return file.read(1024).decode("utf-8")
