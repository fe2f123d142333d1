"""A fake ``lms`` executable (LM Studio's CLI) that records its argv and prints canned output."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def fake_lms(directory: Path, *, stdout: str = "", stderr: str = "", code: int = 0,
             hang: bool = False) -> Path:
    """An executable ``lms`` in `directory` that appends its argv (as JSON) to ``calls``,
    prints canned output and exits with `code`, or hangs."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "lms"
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys, time\n"
        f"with open({str(directory / 'calls')!r}, 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"sys.stdout.write({stdout!r})\n"
        f"sys.stderr.write({stderr!r})\n"
        "sys.stdout.flush()\n"
        f"if {hang!r}:\n"
        f"    open({str(directory / 'pid')!r}, 'w').write(str(os.getpid()))\n"
        "    time.sleep(60)\n"
        f"sys.exit({code})\n"
    )
    path.chmod(0o755)
    return path


def calls(lms: Path) -> list[list[str]]:
    log = lms.parent / "calls"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
