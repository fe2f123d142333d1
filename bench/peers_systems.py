"""The systems bench/peers.py compares, as processes: LiteLLM and claude-code-router
installed outside the project venv, each system started in front of the emulator, and
what its processes used (CPU seconds, peak RSS). A peer that cannot be had raises
``Unavailable``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import trio

from bench.common import ROOT, free_port

MODEL = "qwen/qwen3-coder-30b"
CLAUDE_MODEL = "claude-opus-5-5"  # what Claude Code sends (the captured requests)
API_KEY = "sk-bench-5f0c2a9e71d84b3c9a6e0d1f2b7c4e88"  # accepted by every system
OUT = ROOT / "bench" / "out"
PEERS_VENV = OUT / "peers-venv"
CCR_DIR = OUT / "ccr"
LITELLM_SPEC = "litellm[proxy]==1.106.2"
# 3.x needs Node >= 22 and a native sqlite build; 2.0.0 is one bundled file on Node >= 20
# whose `ccr start` runs the Fastify server in the foreground.
CCR_SPEC = "@musistudio/claude-code-router@2.0.0"
CCR_CLI = CCR_DIR / "node_modules/@musistudio/claude-code-router/dist/cli.js"


class Unavailable(Exception):
    """A peer that cannot be installed or run here; the message says why."""


# -- processes ------------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()  # fields from 3 (state) on


def tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def cpu_seconds(pid: int) -> float:
    """utime+stime of the process tree (plus reaped children's cutime+cstime)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in tree(pid):
        try:
            fields = _stat(p)
        except OSError:
            continue
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return total / tick


def peak_rss_mb(pid: int) -> float:
    """Sum of VmHWM over the process tree, in MiB."""
    kb = 0
    for p in tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
        kb += int(match.group(1)) if match else 0
    return kb / 1024


def log_tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip()[:200] for line in text[-lines:])


@asynccontextmanager
async def service(name: str, args: list[str], ready_url: str, log: Path, *,
                  env: dict[str, str] | None = None, timeout: float = 60.0
                  ) -> AsyncIterator[trio.Process]:
    """Run ``args`` (output to ``log``) until the block ends; wait until ``ready_url``
    answers. Raises Unavailable if it exits or does not answer in time."""
    with log.open("wb") as sink:
        proc = await trio.lowlevel.open_process(
            args, env=env or dict(os.environ), cwd=ROOT, stdin=subprocess.DEVNULL,
            stdout=sink, stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            deadline = trio.current_time() + timeout
            while True:
                if proc.poll() is not None:
                    raise Unavailable(f"{name} exited with status {proc.returncode}: "
                                      f"{log_tail(log)}")
                if trio.current_time() > deadline:
                    raise Unavailable(f"{name} did not answer {ready_url} within {timeout:.0f}s:"
                                      f" {log_tail(log)}")
                try:
                    await client.get(ready_url)
                    break
                except httpx.TransportError:
                    await trio.sleep(0.1)
        yield proc
    finally:
        pids = tree(proc.pid)
        for pid in pids:
            with suppress(OSError):
                os.kill(pid, 15)
        with trio.move_on_after(5) as scope:
            await proc.wait()
        if scope.cancelled_caught:
            for pid in pids:
                with suppress(OSError):
                    os.kill(pid, 9)
            await proc.wait()


# -- installing the peers -----------------------------------------------------------------


def install_litellm(allow: bool) -> Path:
    exe = PEERS_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    if not allow:
        raise Unavailable(f"not installed ({exe} missing; run without --no-install)")
    print(f"installing {LITELLM_SPEC} into {PEERS_VENV} ...", file=sys.stderr, flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True,
                       capture_output=True, timeout=120)
        subprocess.run([str(PEERS_VENV / "bin" / "pip"), "install", "-q", LITELLM_SPEC],
                       check=True, capture_output=True, timeout=1200)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-3:]
        raise Unavailable(f"pip install {LITELLM_SPEC} failed: {' | '.join(tail)}") from None
    except subprocess.TimeoutExpired:
        raise Unavailable(f"pip install {LITELLM_SPEC} timed out") from None
    if not exe.exists():
        raise Unavailable(f"pip installed {LITELLM_SPEC} but there is no {exe}")
    return exe


def install_ccr(allow: bool) -> tuple[str, Path]:
    node = shutil.which("node")
    if node is None:
        raise Unavailable("node is not on PATH")
    if CCR_CLI.exists():
        return node, CCR_CLI
    if not allow:
        raise Unavailable(f"not installed ({CCR_CLI} missing; run without --no-install)")
    npm = shutil.which("npm")
    if npm is None:
        raise Unavailable("npm is not on PATH")
    print(f"installing {CCR_SPEC} into {CCR_DIR} ...", file=sys.stderr, flush=True)
    try:
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(CCR_DIR),
                        CCR_SPEC], check=True, capture_output=True, timeout=600)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-3:]
        raise Unavailable(f"npm install {CCR_SPEC} failed: {' | '.join(tail)}") from None
    except subprocess.TimeoutExpired:
        raise Unavailable(f"npm install {CCR_SPEC} timed out") from None
    if not CCR_CLI.exists():
        raise Unavailable(f"npm installed {CCR_SPEC} but there is no {CCR_CLI}")
    return node, CCR_CLI


# -- starting each system -------------------------------------------------------------------


@asynccontextmanager
async def start_lmsd(emu_url: str, tmp: Path) -> AsyncIterator[tuple[str, trio.Process]]:
    port, admin = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = [sys.executable, "-m", "lmsd", "serve", "--listen", f"127.0.0.1:{port}",
            "--admin-listen", f"127.0.0.1:{admin}", "--upstream", emu_url, "--no-watch",
            "--state-dir", str(tmp / "lmsd-state"), "--model-map", f"{CLAUDE_MODEL}={MODEL}",
            "--log-level", "warning"]
    url = f"http://127.0.0.1:{port}"
    async with service("lmsd", args, f"{url}/", tmp / "lmsd.log", env=env) as proc:
        yield url, proc


LITELLM_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"default": {"class": "logging.StreamHandler"}},
    "loggers": {
        "uvicorn": {"handlers": ["default"], "level": "WARNING"},
        "uvicorn.error": {"level": "WARNING"},
        "uvicorn.access": {"handlers": ["default"], "level": "WARNING", "propagate": False},
    },
}


@asynccontextmanager
async def start_litellm(emu_url: str, tmp: Path, allow_install: bool,
                        provider: str = "lm_studio"
                        ) -> AsyncIterator[tuple[str, trio.Process]]:
    """LiteLLM's proxy. ``lm_studio/`` is its provider for LM Studio (chat completions);
    ``openai/`` sends /v1/messages through the Responses API instead."""
    exe = await trio.to_thread.run_sync(install_litellm, allow_install)
    port = free_port()
    config = tmp / f"litellm-{provider}.yaml"
    config.write_text(json.dumps({
        "model_list": [{
            "model_name": CLAUDE_MODEL,
            "litellm_params": {"model": f"{provider}/{MODEL}", "api_base": f"{emu_url}/v1",
                               "api_key": "lm-studio"},
        }],
        "litellm_settings": {"drop_params": True},
        "general_settings": {"master_key": API_KEY},
    }))  # JSON is YAML
    (tmp / "litellm-logging.json").write_text(json.dumps(LITELLM_LOGGING))
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR",
               LITELLM_TELEMETRY="False", HOME=str(tmp / "litellm-home"))
    env.pop("PYTHONPATH", None)
    args = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", "1", "--log_config", str(tmp / "litellm-logging.json")]
    url = f"http://127.0.0.1:{port}"
    async with service("litellm", args, f"{url}/health/liveliness",
                       tmp / f"litellm-{provider}.log",
                       env=env, timeout=120) as proc:
        yield url, proc


@asynccontextmanager
async def start_ccr(emu_url: str, tmp: Path, allow_install: bool,
                    transformers: list[str] | None = None
                    ) -> AsyncIterator[tuple[str, trio.Process]]:
    node, cli = await trio.to_thread.run_sync(install_ccr, allow_install)
    port = free_port()
    home = tmp / ("ccr-home-" + "-".join(transformers or ["plain"]))
    (home / ".claude-code-router").mkdir(parents=True)
    provider: dict[str, Any] = {"name": "lmstudio",
                                "api_base_url": f"{emu_url}/v1/chat/completions",
                                "api_key": "lm-studio", "models": [MODEL]}
    if transformers:
        provider["transformer"] = {"use": transformers}
    (home / ".claude-code-router" / "config.json").write_text(json.dumps({
        "LOG": False, "HOST": "127.0.0.1", "PORT": port, "APIKEY": API_KEY,
        "NON_INTERACTIVE_MODE": True, "Providers": [provider],
        "Router": {"default": f"lmstudio,{MODEL}"},
    }, indent=2))
    env = dict(os.environ, HOME=str(home))
    url = f"http://127.0.0.1:{port}"
    async with service("ccr", [node, str(cli), "start"], f"{url}/", home / "ccr.log",
                       env=env) as proc:
        yield url, proc


def versions() -> str:
    """The peers' versions, as installed."""
    found = []
    infos = sorted(PEERS_VENV.glob("lib/python*/site-packages/litellm-*.dist-info"))
    if infos:
        found.append("LiteLLM " + infos[-1].name.removeprefix("litellm-").removesuffix(
            ".dist-info"))
    package = CCR_CLI.parent.parent / "package.json"
    if package.exists():
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout
        found.append(f"claude-code-router {json.loads(package.read_text())['version']} "
                     f"(node {node.strip()})")
    return ", ".join(found) or "none installed"
