"""The real Claude Code CLI (2.1.337) with ``eval "$(lmsd env)"``: the default setup (the
loaded model's id, the lean system prompt) prefills far less than Claude's names, and an
agent still edits files, runs subagents and keeps a plan with it."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest
import trio

from tests.emulator import Call, Reply, Text
from tests.support.claude_cli import run_claude

pytestmark = pytest.mark.cli

MODEL = "qwen/qwen3-coder-30b"
SETUPS = {"default": (), "claude-names": ("--claude-names",)}
OLDER = {"ANTHROPIC_MODEL": "claude-sonnet-4-6"}  # an older Claude id: the full prompt


async def lmsd_env(lmsd: Any, *args: str) -> dict[str, str]:
    """The variables ``eval "$(lmsd env ARGS)"`` sets for this daemon."""
    with trio.fail_after(10):
        while not lmsd.router.backends[0].watcher.models:  # the first poll of LM Studio
            await trio.sleep(0.05)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMSD_")}
    env["LMSD_ADMIN_LISTEN"] = lmsd.admin_url.removeprefix("http://")
    env["LMSD_LISTEN"] = lmsd.url.removeprefix("http://")
    done = await trio.run_process([sys.executable, "-m", "lmsd", "env", *args],
                                  capture_stdout=True, env=env)
    script = 'eval "$1"; env -0'
    shell = await trio.run_process(["sh", "-c", script, "sh", done.stdout.decode()],
                                   capture_stdout=True, env={"PATH": "/usr/bin:/bin"})
    after = dict(item.split("=", 1) for item in shell.stdout.decode().split("\0") if item)
    return {k: v for k, v in after.items() if k.startswith(("ANTHROPIC_", "CLAUDE_", "API_"))}


def sizes(body: dict[str, Any]) -> tuple[int, int]:
    """Bytes of instructions and of the tool list in a request to the engine."""
    return len(body["instructions"].encode()), len(json.dumps(body["tools"]).encode())


async def test_lmsd_env_default_prefills_least(lmsd, emulator, tmp_path):
    """``claude -p "say hi"``: the default setup's first request is the smallest, with the
    same tools; Claude's names with an older id (claude-sonnet-4-6) carry the full prompt,
    over three times the instructions and half as much tool text again."""
    firsts = {}
    runs = {"default": ((), {}), "claude-names": (("--claude-names",), {}),
            "sonnet-4-6": (("--claude-names",), OLDER),
            "default, sonnet-4-6": ((), OLDER)}
    for name, (args, extra) in runs.items():
        env = {**await lmsd_env(lmsd, *args), **extra}
        work = tmp_path / name.replace(" ", "_")
        (work / "tmp").mkdir(parents=True)
        emulator.script(Reply(Text("hi")))
        run = await run_claude(lmsd.url, "say hi", home=work / "home", cwd=work,
                               extra_env={**env, "TMPDIR": str(work / "tmp")})
        assert run.returncode == 0, run.stderr + run.stdout
        assert run.text == "hi"
        firsts[name] = emulator.generations[-1].body
    names = {name: [t["name"] for t in body["tools"]] for name, body in firsts.items()}
    assert all(tools == names["default"] for tools in names.values()), names
    assert {body["model"] for body in firsts.values()} == {MODEL}
    got = {name: sizes(body) for name, body in firsts.items()}
    assert got["default"] == min(got.values()), got
    (lean_ins, lean_tools), (full_ins, full_tools) = got["default"], got["sonnet-4-6"]
    assert lean_ins * 3 < full_ins and lean_tools * 3 < full_tools * 2, got
    assert "# Doing tasks" in firsts["sonnet-4-6"]["instructions"]
    assert "# Doing tasks" not in firsts["default"]["instructions"]
    # the lean prompt is lmsd env's choice, not the id's: it holds for an older id too
    assert got["default, sonnet-4-6"][0] * 3 < full_ins, got
    print(got)


@pytest.mark.parametrize("setup", list(SETUPS))
async def test_an_agent_edits_delegates_and_plans_in_either_setup(lmsd, emulator, tmp_path,
                                                                   setup):
    """Read, Edit and a subagent (Agent), each run by the CLI, with the same results."""
    env = await lmsd_env(lmsd, *SETUPS[setup])

    def answer(record: Any) -> Reply:
        asked = json.dumps(record.context_items[:1])
        return Reply(Text("two words" if "Count the words." in asked else "done"))

    (tmp_path / "tmp").mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("hello world\n")
    emulator.script(
        Reply(Call("Read", {"file_path": str(notes)})),
        Reply(Call("Edit", {"file_path": str(notes), "old_string": "hello",
                            "new_string": "goodbye"})),
        Reply(Call("Agent", {"description": "Count words", "prompt": "Count the words.",
                             "subagent_type": "general-purpose"})),
        answer, answer, answer,  # the subagent's turn and the main loop's, in any order
    )
    run = await run_claude(lmsd.url, "change hello to goodbye in notes.txt", home=tmp_path /
                           "home", cwd=tmp_path, allowed_tools=["Read", "Edit", "Agent"],
                           extra_env={**env, "TMPDIR": str(tmp_path / "tmp")})
    assert run.returncode == 0, run.stderr + run.stdout
    assert notes.read_text() == "goodbye world\n"
    assert run.result is not None and run.result.get("is_error") is False, run.stdout
    outputs = list({i["call_id"]: i["output"] for g in emulator.generations
                    for i in g.body["input"] if i["type"] == "function_call_output"}.values())
    assert "hello world" in outputs[0]  # Read
    assert "has been updated successfully" in outputs[1]  # Edit
    assert "agent launched" in outputs[2].lower()  # Agent runs in the background
    subagent = [g for g in emulator.generations
                if "Count the words." in json.dumps(g.body["input"][:1])]
    assert subagent and subagent[0].reply.items == (Text("two words"),)
    assert not [e for e in lmsd.bus.recent if e["type"] == "request.rejected"]
