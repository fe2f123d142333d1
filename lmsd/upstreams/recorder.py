"""Recording exchanges (issue 16): the taps and the daemon's registry of recorded sessions.

Two thin taps fill one ``Recording`` per client request, found through a context
variable (None when nothing records: the taps then cost one lookup):

- ``Recorder.wrap`` is ASGI middleware on the proxy app: it keeps the client request (its
  body as the app reads it, after the guard and within the body limit) and every byte the
  client is sent (status, body chunks, their times);
- ``RecordingTransport`` wraps the upstream client's transport: each upstream request and
  the raw chunks of its answer, as they arrive (before any parsing).

The front says which session and agent a request belongs to (``note_binding``); only
then does the registry know whether to keep it. Files go to
``state_dir/recordings/<session>/<time>-<n>.json``, written in a worker thread, and the
oldest go when the directory passes ``record_max_bytes`` or ``record_max_age``. The
format and its redaction are ``protocol/recording.py``.
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import json
import os
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import httpx
import trio

from ..log import event
from ..protocol import recording as fmt

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]],
                    Callable[[Message], Awaitable[None]]], Awaitable[None]]

DEFAULT_MAX_BYTES = 200 * 1024 * 1024
DEFAULT_MAX_AGE = 7 * 24 * 3600.0

_current: ContextVar[Recording | None] = ContextVar("lmsd_recording", default=None)
_numbers = itertools.count(1)


class Recording:
    """One client request being recorded: the exchange dict as it fills."""

    def __init__(self, exchange: dict[str, Any]) -> None:
        self.exchange = exchange
        self.start = trio.current_time()

    def t(self) -> float:
        return round(trio.current_time() - self.start, 4)

    def first(self, name: str) -> None:
        self.exchange["timings"].setdefault(name, self.t())


def note_binding(session: str, agent: str, dialect: Any) -> None:
    """The front placed the request being recorded (if any): whose it is, and the
    upstream kind it speaks (replay speaks the same)."""
    recording = _current.get()
    if recording is not None:
        recording.exchange.update(session=session, agent=agent,
                                  dialect=getattr(dialect, "name", None),
                                  server=type(dialect).__name__)


class _Tap(httpx.AsyncByteStream):
    """An upstream answer's raw bytes, kept as they pass to the dialect's parser."""

    def __init__(self, inner: httpx.AsyncByteStream, chunks: list[list[Any]],
                 recording: Recording) -> None:
        self.inner, self.chunks, self.recording = inner, chunks, recording
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:  # type: ignore[attr-defined]
            self.recording.first("first_upstream_byte")
            self.chunks.append([self.recording.t(), self.decoder.decode(chunk)])
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class RecordingTransport(httpx.AsyncBaseTransport):
    """The upstream client's transport, recording when the current request records."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        recording = _current.get()
        if recording is None:
            return await self.inner.handle_async_request(request)
        path = request.url.raw_path.decode("ascii", "replace")
        entry: dict[str, Any] = {"t": recording.t(), "method": request.method, "path": path,
                                 "body": fmt.redact(fmt.as_body(request.content)),
                                 "status": None, "headers": {}, "chunks": []}
        recording.exchange["upstream"].append(entry)
        response = await self.inner.handle_async_request(request)
        entry["status"] = response.status_code
        entry["headers"] = fmt.allowed_headers(response.headers.items())
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(response.status_code, headers=response.headers,
                              stream=_Tap(response.stream, entry["chunks"], recording),
                              extensions=response.extensions, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def tap(client: httpx.AsyncClient) -> None:
    """Record ``client``'s requests whenever the request being served records."""
    transport = client._transport  # httpx has no public setter
    if not isinstance(transport, RecordingTransport):
        client._transport = RecordingTransport(transport)


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

    def wrap(self, app: ASGIApp, front_of: Callable[[str], str] = lambda path: "", *,
             max_body_bytes: int = 32 * 1024 * 1024) -> ASGIApp:
        """``app`` with a recording of each HTTP request while any session records.

        The tap reads nothing itself: it keeps the request body as the app reads it (so a
        request refused before its route reads nothing, recording or not) and at most
        ``max_body_bytes`` of it (the app refuses a longer one)."""
        async def recorded(scope: Scope, receive: Callable[[], Awaitable[Message]],
                           send: Callable[[Message], Awaitable[None]]) -> None:
            if scope["type"] != "http" or scope.get("method") != "POST" or not self.active:
                await app(scope, receive, send)
                return
            await self._record(app, scope, receive, send, front_of, max_body_bytes)
        return recorded

    async def _record(self, app: ASGIApp, scope: Scope,
                      receive: Callable[[], Awaitable[Message]],
                      send: Callable[[Message], Awaitable[None]],
                      front_of: Callable[[str], str], max_body_bytes: int) -> None:
        body = bytearray()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        recording = Recording(fmt.new_exchange(
            recorded_at=time.time(), method="POST", path=scope["path"], headers=headers,
            body=b""))
        recording.exchange["front"] = front_of(scope["path"])
        stream = recording.exchange["client_stream"]
        decoder = codecs.getincrementaldecoder("utf-8")("replace")

        async def tapped() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(body) <= max_body_bytes:
                body.extend(message.get("body", b"")[:max_body_bytes + 1 - len(body)])
            return message

        async def sent(message: Message) -> None:
            if message["type"] == "http.response.start":
                stream["status"] = message["status"]
                stream["headers"] = fmt.allowed_headers(
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in message.get("headers", []))
            elif message["type"] == "http.response.body" and message.get("body"):
                recording.first("first_client_byte")
                stream["chunks"].append([recording.t(), decoder.decode(message["body"])])
            await send(message)

        token = _current.set(recording)
        try:
            await app(scope, tapped, sent)
        finally:
            _current.reset(token)
            recording.exchange["timings"]["total"] = recording.t()
            with trio.CancelScope(shield=True):
                await self._finish(recording.exchange, bytes(body))

    async def _finish(self, exchange: dict[str, Any], body: bytes) -> None:
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
