"""What the ``lmsd doctor`` tests share: no real LM Studio leaking in, settings on free
ports, a calling shell set up for Claude Code, fake programs, ``lmsd doctor``'s flags."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path
from typing import Any

import pytest

from lmsd.config import Settings, load_settings
from lmsd.ops import doctor
from lmsd.ops.client import local_url
from lmsd.ops.doctor import diagnose
from lmsd.ops.doctor.result import Result
from lmsd.upstreams import discovery

MODEL = "qwen/qwen3-coder-30b"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]




@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path, dead_port):
    """No real LM Studio (its home, its port 1234, its `lms`) leaks into these tests."""
    monkeypatch.setattr(discovery, "DEFAULT_PORT", dead_port)
    monkeypatch.setenv("LMSTUDIO_HOME", str(tmp_path / "no-lmstudio"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    (tmp_path / "bin").mkdir()


def settings_for(tmp_path: Path, upstream: str, **flags: Any) -> Settings:
    values = {"listen": f"127.0.0.1:{free_port()}", "admin_listen": f"127.0.0.1:{free_port()}",
              "upstream": upstream, "state_dir": str(tmp_path / "state"), **flags}
    return load_settings(values, {})


def shell(tmp_path: Path, settings: Settings, **changes: str | None) -> dict[str, str]:
    """A calling shell set up for Claude Code; ``NAME=None`` unsets NAME."""
    env = {"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path / "home"),
           "ANTHROPIC_BASE_URL": local_url(settings.listen), "ANTHROPIC_AUTH_TOKEN": "lmsd",
           "CLAUDE_CODE_ATTRIBUTION_HEADER": "0", **changes}
    return {k: v for k, v in env.items() if v is not None}


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


async def check(settings: Settings, env: dict[str, str], name: str, **kw: Any) -> Result:
    results = await diagnose(settings, env, **kw)
    return next(r for r in results if r.check == name)


def doctor_args(**kw: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    doctor.add_parser(parser.add_subparsers(dest="command"))
    argv = ["doctor"] + [a for k, v in kw.items() if v is not None
                         for a in (["--" + k.replace("_", "-")] + ([] if v is True else [v]))]
    return parser.parse_args(argv)


def prepare_shell(tmp_path: Path, monkeypatch, settings: Settings) -> None:
    script(tmp_path / "bin" / "claude", 'echo "2.1.329 (Claude Code)"\n')
    for key, value in shell(tmp_path, settings).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CODEX_HOME", raising=False)  # HOME has no Codex config: skipped
    monkeypatch.setenv("LMSD_STATE_DIR", str(tmp_path / "state"))
