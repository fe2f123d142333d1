"""The real Claude Code CLI (2.1.329) with ``lmsd env``: it knows the loaded context and
compacts on its own before the context overflows."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

import tests.emulator.state as state
from tests.emulator import Call, Reply, Text
from tests.support.claude_cli import require_claude, run_claude

pytestmark = pytest.mark.cli

MODEL = "qwen/qwen3-coder-30b"
COMPACT_MARK = "CRITICAL: Respond with TEXT ONLY"  # Claude Code's summary request


async def lmsd_env(lmsd: Any, context: int, model: str | None = None) -> dict[str, str]:
    """What ``lmsd env`` prints for this daemon (it asks the admin API for the context)."""
    with trio.fail_after(10):
        while not lmsd.router.backends[0].watcher.models:  # the first poll of LM Studio
            await trio.sleep(0.05)
    assert [m.context_length for m in lmsd.router.backends[0].watcher.models.values()] == [context]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMSD_")}
    env["LMSD_ADMIN_LISTEN"] = lmsd.admin_url.removeprefix("http://")
    args = [sys.executable, "-m", "lmsd", "env", *(["--model", model] if model else [])]
    done = await trio.run_process(args, capture_stdout=True, env=env)
    exports = {}
    for line in done.stdout.decode().splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            exports[name] = shlex.split(value)[0]
    exports["ANTHROPIC_BASE_URL"] = lmsd.url  # the test daemon's port, not the configured one
    if model:
        exports.setdefault("ANTHROPIC_MODEL", model)
    return exports


class Tmux:
    """One Claude Code TUI in a private tmux server."""

    def __init__(self, tmp: Path) -> None:
        self.socket = str(tmp / "tmux.sock")

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.socket, *args], check=True,
                              capture_output=True, text=True).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "cc")

    async def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        with trio.fail_after(timeout):
            while not (found := re.search(pattern, self.screen())):
                await trio.sleep(0.2)
        return found


async def test_context_shows_the_loaded_window_for_a_local_model(start_lmsd, emulator,
                                                                 tmp_path):
    """``/context`` in the TUI shows 32.8k, the loaded context, with a local model id."""
    claude = require_claude()
    if not shutil.which("tmux"):
        pytest.fail("tmux is needed to drive the Claude Code TUI", pytrace=False)
    emulator.models[MODEL].context_length = 32768
    lmsd = await start_lmsd(emulator.url)
    env = await lmsd_env(lmsd, 32768, MODEL)
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (home / ".claude.json").write_text(json.dumps({
        "hasCompletedOnboarding": True, "theme": "dark",
        "projects": {str(work): {"hasTrustDialogAccepted": True,
                                 "hasCompletedProjectOnboarding": True}}}))
    env.update(HOME=str(home), TERM="xterm-256color", LANG="C.UTF-8", DISABLE_TELEMETRY="1",
               PATH=f"{Path(claude).parent}:/usr/bin:/bin")
    tmux = Tmux(tmp_path)
    command = "env -i " + " ".join(f"{k}='{v}'" for k, v in env.items()) + f" '{claude}'"
    tmux.run("new-session", "-d", "-s", "cc", "-x", "160", "-y", "50", "-c", str(work),
             command)
    try:
        await tmux.wait_for("\u276f")  # the prompt
        tmux.run("send-keys", "-t", "cc", "/context")
        await tmux.wait_for(r"/context\s")
        tmux.run("send-keys", "-t", "cc", "Enter")
        used = await tmux.wait_for(r"([\d.]+k)/([\d.]+k) tokens")
        assert used[2] == "32.8k", tmux.screen()
        window = await tmux.wait_for(r"Auto-compact window:\s+([\d.]+k) tokens")
        assert window[1] == "32.8k", tmux.screen()
    finally:
        tmux.run("kill-server")
    assert not emulator.generations  # /context asks no model


@pytest.mark.parametrize("model", [None, MODEL], ids=["claude-names", "local-id"])
async def test_claude_code_compacts_on_its_own_before_the_context_overflows(
        start_lmsd, emulator, tmp_path, monkeypatch, model):
    """A session that grows past what a 64k model holds: with ``lmsd env``, Claude Code
    sends its summary request before any request overflows, then finishes.

    64k rather than 32k: Claude Code's own prompt is 12.5k emulator tokens, and at 32k it
    compacts at 15.7k, so a few kilotokens of kept tool output already trip its thrashing
    guard."""
    context = 65536
    emulator.models[MODEL].context_length = context
    lmsd = await start_lmsd(emulator.url)
    filler = " ".join(["lorem"] * 2000)  # each step adds about 4k tokens
    steps = 14  # about 56k tokens in all: more than the context holds
    issued = []

    def policy(context: list[dict[str, Any]], tools: list[Any]) -> Reply:
        if COMPACT_MARK in json.dumps(context[-1] if context else {}):
            return Reply(Text("<analysis>fine</analysis>\n<summary>The user asked for "
                              f"{steps} echo commands; {len(issued)} ran.</summary>"))
        if len(issued) == steps:
            return Reply(Text("done"))
        issued.append(len(issued))
        return Reply(Text(f"Step {len(issued)}."), Call("Bash", {
            "command": f"echo {filler} {len(issued)}", "description": f"Step {len(issued)}"}))

    monkeypatch.setattr(state, "default_reply", policy)
    (tmp_path / "tmp").mkdir()
    env: dict[str, str | None] = {**await lmsd_env(lmsd, context, model),
                                  "TMPDIR": str(tmp_path / "tmp"), "ANTHROPIC_API_KEY": None}
    run = await run_claude(lmsd.url, f"run echo {steps} times via bash, then say done",
                           home=tmp_path / "home", cwd=tmp_path, extra_env=env, timeout=300)
    gens = emulator.generations
    trace = [(g.status, g.input_tokens, COMPACT_MARK in json.dumps(g.new_items))
             for g in gens]
    assert run.returncode == 0, f"{trace}\n{run.stderr}{run.stdout}"
    assert run.result is not None and run.result["result"] == "done"
    statuses = [g.status for g in gens]
    compactions = [i for i, g in enumerate(gens) if COMPACT_MARK in json.dumps(g.new_items)]
    assert compactions, statuses
    assert 400 not in statuses, statuses  # it never overflowed: it compacted first
    assert max(g.input_tokens for g in gens) < context
    assert len(issued) == steps
