"""The real Claude Code CLI (2.1.329) through lmsd to the emulator."""

from __future__ import annotations

import pytest

from tests.claude_cli import run_claude

pytestmark = pytest.mark.cli


async def test_claude_code_completes_a_bash_tool_loop(lmsd, emulator, tmp_path):
    (tmp_path / "tmp").mkdir()
    run = await run_claude(
        lmsd.url, "run echo hello via bash and then say done",
        home=tmp_path / "home", cwd=tmp_path, allowed_tools=["Bash"],
        extra_env={"TMPDIR": str(tmp_path / "tmp")},
    )
    assert run.returncode == 0, run.stderr + run.stdout
    assert run.result is not None and run.result.get("is_error") is False, run.stdout
    assert run.result["result"] == "done"
    first, second = emulator.generations
    # turn 1: the model (emulator) asked for Bash; Claude Code ran it
    call = next(i for i in emulator.responses[first.response_id].output
                if i["type"] == "function_call")
    assert call["name"] == "Bash"
    # turn 2: the tool's real output came back under the model's own call_id
    result = second.body["input"][-1]
    assert result["type"] == "function_call_output"
    assert result["call_id"] == call["call_id"]
    assert "hello-from-tool" in result["output"]
    assert [t["name"] for t in second.body["tools"]][:2] == ["Agent", "Bash"]
    assert "x-anthropic-billing-header" not in second.body.get("instructions", "")
