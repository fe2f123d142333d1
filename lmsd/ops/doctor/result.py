"""What a ``lmsd doctor`` check finds, and how a check runs a program.

Every check module returns :class:`Result`; ``runner`` runs them and ``command`` prints them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ...processes import run_bounded

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
HTTP_TIMEOUT = 2.0


@dataclass(frozen=True)
class Result:
    """One finding: ``status`` is "ok", "warn", "fail" or "skip"; ``fix`` is None when ok."""

    check: str
    status: str
    detail: str
    fix: str | None = None


async def execute(argv: list[str], env: Mapping[str, str],
                  timeout: float) -> tuple[int, str, str]:
    """Run ``argv`` (no shell): exit status, stdout, stderr. OSError, TimeoutError."""
    done = await run_bounded(argv, timeout=timeout, env=env)
    return (done.returncode, done.stdout.decode("utf-8", "replace").strip(),
            done.stderr.decode("utf-8", "replace").strip())


def last_line(*texts: str) -> str:
    for text in texts:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return ""
