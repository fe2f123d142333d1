"""Running helper programs (``lms``, ``systemctl``, ``claude``...): argument lists only,
never a shell, always bounded in time."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import trio


async def kill_group(proc: trio.Process) -> None:
    """Kill ``proc`` and anything it started in its session (SIGKILL, no grace period).

    Programs like ``lms`` start children of their own; killing only the parent would
    leave them running with our pipes open.
    """
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except OSError:
        pass


async def run_bounded(argv: Sequence[str], *, timeout: float,
                      env: Mapping[str, str] | None = None
                      ) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` with its output captured; the result whatever its exit status.

    Raises OSError when it cannot start, and TimeoutError (after killing it and its
    children) when it outlives ``timeout`` seconds.
    """
    with trio.move_on_after(timeout):
        return await trio.run_process(
            list(argv), capture_stdout=True, capture_stderr=True, check=False,
            env=dict(env) if env is not None else None,
            start_new_session=os.name == "posix", deliver_cancel=kill_group)
    command = " ".join([Path(argv[0]).name, *argv[1:]])
    raise TimeoutError(f"`{command}` did not finish within {timeout:g} s; killed it")
