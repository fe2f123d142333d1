"""``lmsd doctor`` on the command line: its flags, the results one line each (or JSON),
and the exit status (1 when a check failed, warnings allowed)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from typing import TextIO

import trio

from ...config import ConfigError, Settings, env_name, load_settings
from ..text import GREEN, RED, RESET, YELLOW, use_color
from .result import FAIL, OK, SKIP, WARN, Result
from .runner import diagnose

MARKS = {OK: "✓", WARN: "!", FAIL: "✗", SKIP: "-"}
WORDS = {OK: "ok", WARN: "warn", FAIL: "FAIL", SKIP: "skip"}
COLORS = {OK: GREEN, WARN: YELLOW, FAIL: RED, SKIP: ""}


def format_results(results: list[Result], *, fancy: bool = False, color: bool = False) -> str:
    """One line per result: mark, check, finding and, unless ok, the fix."""
    width = max((len(r.check) for r in results), default=0)
    lines = []
    for r in results:
        mark = MARKS[r.status] if fancy else WORDS[r.status].ljust(4)
        if color and COLORS[r.status]:
            mark = f"{COLORS[r.status]}{mark}{RESET}"
        line = f"{mark} {r.check.replace('_', ' ').ljust(width)}  {r.detail}"
        if r.fix and r.status != OK:
            line += f"; fix: {r.fix}"
        lines.append(line)
    return "\n".join(lines)


def _utf8_terminal(stream: TextIO) -> bool:
    encoding = (getattr(stream, "encoding", "") or "").lower().replace("-", "")
    isatty = getattr(stream, "isatty", None)
    return encoding == "utf8" and bool(isatty and isatty())


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``lmsd doctor`` to the CLI."""
    parser = sub.add_parser(
        "doctor", help="check the setup and say how to fix it",
        description="Check LM Studio, the loaded models, the ports, the state directory, "
        "the service and this shell's Claude Code environment. Exit status 1 if a check "
        "failed (warnings allowed).")
    defaults = Settings()
    for key, metavar in (("listen", "HOST:PORT"), ("admin_listen", "HOST:PORT"),
                         ("upstream", "URL")):
        parser.add_argument("--" + key.replace("_", "-"), dest=key, default=None,
                            metavar=metavar, help=f"env {env_name(key)}; default "
                            f"{getattr(defaults, key)!r}")
    parser.add_argument("--config", dest="config", default=None, metavar="FILE",
                        help=f"a TOML config file; env {env_name('config')}")
    parser.add_argument("--json", dest="as_json", action="store_true",
                        help="print a JSON list of {check, status, detail, fix}")


def run(args: argparse.Namespace) -> int:
    """``lmsd doctor``: print the results; 0 unless a check failed."""
    flags = {k: getattr(args, k, None) for k in ("config", "listen", "admin_listen",
                                                  "upstream")}
    try:
        settings = load_settings(flags)
    except ConfigError as exc:
        results = [Result("config", FAIL, str(exc), "correct the setting it names")]
    else:
        try:
            results = trio.run(diagnose, settings, dict(os.environ))
        except KeyboardInterrupt:
            return 130
    out = sys.stdout
    if getattr(args, "as_json", False):
        print(json.dumps([asdict(r) for r in results], indent=2), file=out)
    else:
        print(format_results(results, fancy=_utf8_terminal(out), color=use_color(out)),
              file=out)
    out.flush()
    return 1 if any(r.status == FAIL for r in results) else 0
