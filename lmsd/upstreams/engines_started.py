"""Engine processes lmsd starts itself (a llama-server per ``[[models]]`` entry), supervised
like lmsd's other parts.

``StartedEngine.run`` belongs to its owner's nursery (``url = await nursery.start(e.run)``):
it starts the command on a free 127.0.0.1 port, reports the URL once ``/health`` answers
200, restarts the engine with back-off when it exits on its own, logs its output one line
per ``engine.output`` event at debug, and when the owner's scope ends stops it (SIGTERM to
its process group, SIGKILL after a grace period) before returning: no process outlives it.
``upstreams/models/started.py`` owns one per running ``[[models]]`` entry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import httpx
import trio

from ..config.models import ModelEntry
from ..log import event

HOST = "127.0.0.1"
GRACE = 10.0  # seconds between SIGTERM and SIGKILL: an engine frees GPU memory on exit
LINE_MAX = 2000  # characters of one output line kept in the log
TAIL = 20  # output lines quoted when a start fails
POLL = 0.1
DRAIN = 1.0  # seconds its pipes may stay open after it exited


@dataclass
class Backoff:
    """Delays between restarts: ``first``, doubling up to ``ceiling``; a run that lasted
    ``stable_after`` seconds starts the series again (a crash a day is not a crash loop)."""

    first: float = 1.0
    ceiling: float = 60.0
    stable_after: float = 60.0
    _next: float = field(default=0.0, init=False)

    def after_exit(self, ran_for: float) -> float:
        """The delay before the next start, after a run of ``ran_for`` seconds."""
        if not self._next or ran_for >= self.stable_after:
            self._next = self.first
        delay = self._next
        self._next = min(delay * 2, self.ceiling)
        return delay


class EngineFailed(Exception):
    """The engine did not come up: it exited, or ``/health`` never answered 200."""


def free_port(host: str = HOST, prefer: int | None = None) -> int:
    """``prefer`` if it can be bound now (a restart keeps its URL), else one the OS picks."""
    for port in ((prefer, 0) if prefer else (0,)):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError(f"no free port on {host}")  # pragma: no cover - binding port 0 fails


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class StartedEngine:
    """One configured engine process, kept running while its owner runs ``run``."""

    def __init__(self, spec: ModelEntry, *, backoff: Backoff | None = None,
                 grace: float = GRACE, host: str = HOST,
                 on_ready: Callable[[str, bool], None] | None = None) -> None:
        self.spec = spec
        #: Told (url, restarted) each time it answers: a fresh engine holds no cache.
        self.on_ready = on_ready
        self.backoff = backoff or Backoff()
        self.grace = grace
        self.host = host
        self.port: int | None = None
        self.process: trio.Process | None = None
        self.restarts = 0
        self.tail: deque[str] = deque(maxlen=TAIL)
        self._ready = trio.Event()

    @property
    def url(self) -> str | None:
        """Where it answers while ready; None while it starts or waits to restart."""
        return f"http://{self.host}:{self.port}" if self._ready.is_set() else None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def wait_ready(self) -> str:
        """The URL, once it answers (again, after a restart)."""
        while not self._ready.is_set():
            await self._ready.wait()
        return f"http://{self.host}:{self.port}"

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Run until cancelled. A first start that fails raises EngineFailed (the owner
        hears why); after that, every exit is a crash and leads to a restart."""
        first = True
        while True:
            began = trio.current_time()
            try:
                code = await self._run_once(task_status if first else None)
                why = f"exited with code {code}"
            except EngineFailed as exc:
                if first:
                    raise
                why = str(exc)
            first = False
            if self._ready.is_set():  # else those waiting for it keep waiting on this one
                self._ready = trio.Event()
            delay = self.backoff.after_exit(trio.current_time() - began)
            event("engine.crashed", level=logging.ERROR, model=self.spec.name, pid=self.pid,
                  why=why, restart_in_s=delay)
            await trio.sleep(delay)
            self.restarts += 1

    async def _run_once(self, task_status: trio.TaskStatus[str] | None) -> int:
        """Start the process, wait until healthy, then until it exits; its exit code."""
        self.port = free_port(self.host, prefer=self.port)
        failure: EngineFailed | None = None
        async with trio.open_nursery() as nursery:
            try:
                process: trio.Process = await nursery.start(partial(
                    trio.run_process, self.spec.argv(self.port), check=False,
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    env={**os.environ, **self.spec.env}, start_new_session=True,
                    deliver_cancel=self._stop))
            except OSError as exc:  # no such program, not executable: not the engine's fault
                failure = EngineFailed(f"{self.spec.name}: cannot run {self.spec.command[0]!r}: "
                                       f"{exc.strerror or exc} (the first argument of its "
                                       "command: an absolute path, or a program on PATH)")
            else:
                self.process = process
                drained = trio.Event()
                nursery.start_soon(self._drain, process, drained)
                try:
                    await self._wait_healthy(process, drained)
                except EngineFailed as exc:
                    failure = exc
                    nursery.cancel_scope.cancel()  # stops the process (``_stop``)
                else:
                    self._ready.set()
                    url = f"http://{self.host}:{self.port}"
                    if task_status is None:
                        event("engine.restarted", model=self.spec.name, pid=process.pid, url=url,
                              restarts=self.restarts)
                    else:
                        event("engine.started", model=self.spec.name, pid=process.pid, url=url)
                        task_status.started(url)
                    if self.on_ready is not None:
                        self.on_ready(url, task_status is None)
                    await process.wait()
        if failure is not None:
            raise failure
        return process.returncode if process.returncode is not None else -1

    async def _wait_healthy(self, process: trio.Process, drained: trio.Event) -> None:
        url = f"http://{self.host}:{self.port}{self.spec.health}"
        timeout = self.spec.health_timeout
        async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
            with trio.move_on_after(timeout):
                while process.returncode is None:
                    try:
                        if (await http.get(url)).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                    with trio.move_on_after(POLL):
                        await process.wait()
                with trio.move_on_after(DRAIN + POLL):  # its last words, read to the end:
                    await drained.wait()  # they say why (llama-server: the file it lacks)
                raise EngineFailed(f"{self.spec.name}: exited with code {process.returncode} "
                                   f"before {self.spec.health} answered; {self._tail_text()}")
        raise EngineFailed(f"{self.spec.name}: {self.spec.health} did not answer 200 within "
                           f"{timeout:g} s; {self._tail_text()}")

    def _tail_text(self) -> str:
        return "its output ends: " + " | ".join(self.tail) if self.tail else "it wrote nothing"

    async def _drain(self, process: trio.Process, drained: trio.Event) -> None:
        """Log its output until its pipes close, even while the owner cancels: closing them
        early would kill a stopping engine with SIGPIPE. Bounded: once it has exited,
        what it left in its session goes too, and the pipes get ``DRAIN`` seconds."""
        try:
            with trio.CancelScope(shield=True) as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, process.stdout, "stdout")
                    nursery.start_soon(self._pump, process.stderr, "stderr")
                    await process.wait()  # ``_stop`` ends it within ``grace`` when cancelled
                    _signal_group(process.pid, signal.SIGKILL)
                    scope.deadline = trio.current_time() + DRAIN
        finally:
            drained.set()

    async def _pump(self, stream: trio.abc.ReceiveStream | None, name: str) -> None:
        """Each line the engine writes, as one debug event (and into the tail)."""
        if stream is None:
            return
        pending = b""
        async with stream:
            while chunk := await stream.receive_some():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._line(line, name)
                if len(pending) > LINE_MAX * 4:  # a line without end: log what came
                    self._line(pending, name)
                    pending = b""
        if pending:
            self._line(pending, name)

    def _line(self, raw: bytes, name: str) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")[:LINE_MAX]
        if text:
            self.tail.append(text)
            event("engine.output", level=logging.DEBUG, model=self.spec.name, stream=name,
                  line=text)

    async def _stop(self, process: trio.Process) -> None:
        """SIGTERM to its process group, SIGKILL after ``grace`` seconds (``run_process``
        ends this as soon as the process has exited)."""
        _signal_group(process.pid, signal.SIGTERM)
        await trio.sleep(self.grace)
        event("engine.killed", level=logging.WARNING, model=self.spec.name, pid=process.pid,
              grace_s=self.grace)
        _signal_group(process.pid, signal.SIGKILL)

