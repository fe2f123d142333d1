"""The real Claude Code and Codex CLIs run a tool loop to the end when the model prints
its tool call as text (issue 13): lmsd repairs the call, the CLI runs the tool, and the
turn carrying the result reaches a strict LM Studio (the emulator) and succeeds."""

from __future__ import annotations

import json

import pytest

from tests.emulator import FORMATS, PrintedCall, Reply, Text
from tests.support.claude_cli import run_claude
from tests.support.codex_cli import run_codex

pytestmark = pytest.mark.cli


def _repaired(server):
    return [e for e in server.bus.recent if e["type"] == "tool_call.repaired"]


def _sent_call(body, tool):
    """The repaired call and its output, as lmsd sent them with the next turn."""
    items = body["input"]
    [n] = [i for i, item in enumerate(items) if item.get("type") == "function_call"
           and item.get("name") == tool]
    call, output = items[n], items[n + 1]
    assert output["type"] == "function_call_output" and output["call_id"] == call["call_id"]
    return call, output


@pytest.mark.parametrize("fmt", sorted(FORMATS))
async def test_claude_code_runs_a_printed_call(lmsd, emulator, tmp_path, fmt):
    (tmp_path / "tmp").mkdir()
    before = "" if fmt == "bare_json" else "I will run it.\n"  # bare JSON: the whole reply
    emulator.script(Reply(PrintedCall(fmt, "Bash", {"command": "echo printed-$((40+2))"},
                                      before=before)),
                    Reply(Text("done")))
    run = await run_claude(
        lmsd.url, "run the echo command via bash, then say done",
        home=tmp_path / "home", cwd=tmp_path, allowed_tools=["Bash"],
        extra_env={"TMPDIR": str(tmp_path / "tmp")})
    assert run.returncode == 0, run.stderr + run.stdout
    assert run.result is not None and run.result["result"] == "done", run.stdout
    first, second = emulator.generations
    assert second.outcome == "completed"
    call, output = _sent_call(second.body, "Bash")
    assert json.loads(call["arguments"])["command"] == "echo printed-$((40+2))"
    assert "printed-42" in output["output"]  # Claude Code really ran it
    # the repaired answer is no chain node: nothing to chain the second turn from
    assert "previous_response_id" not in second.body
    [event] = _repaired(lmsd)
    assert event["tool"] == "Bash" and event["front"] == "anthropic"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
async def test_codex_runs_a_printed_call(lmsd, emulator, tmp_path, fmt):
    before = "" if fmt == "bare_json" else "Running it.\n"  # bare JSON: the whole reply
    emulator.script(Reply(PrintedCall(fmt, "exec_command", {"cmd": "echo hi"},
                                      before=before)),
                    Reply(Text("done")))
    (tmp_path / "work").mkdir()
    run = await run_codex(lmsd.url, "Run `echo hi` in the shell, then say done.",
                          home=tmp_path / "home", cwd=tmp_path / "work")
    assert run.returncode == 0 and not run.turn_failed, run.explain()
    [command] = run.commands
    assert "echo hi" in command["command"] and command["aggregated_output"] == "hi\n"
    assert run.message == "done"
    first, second = [g for g in emulator.generations if g.path == "/v1/responses"]
    assert second.outcome == "completed"
    call, output = _sent_call(second.body, "exec_command")
    assert "hi\n" in output["output"]
    assert "previous_response_id" not in second.body
    [event] = _repaired(lmsd)
    assert event["tool"] == "exec_command" and event["front"] == "openai_responses"
