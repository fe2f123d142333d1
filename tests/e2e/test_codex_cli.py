"""The real Codex CLI (0.171.0) straight to the LM Studio emulator, without lmsd.

This proves the driver (tests/support/codex_cli.py) and the emulator against the real
client, ahead of lmsd's /v1/responses front: with its default tools Codex cannot talk to
LM Studio at all (the bug that front fixes); with function tools only it can.
"""

from __future__ import annotations

import json

import pytest

from tests.emulator import Call, Reply, Text
from tests.support.codex_cli import FUNCTION_TOOLS_ONLY, TEST_API_KEY, run_codex

pytestmark = pytest.mark.cli

FUNCTION_TOOLS = ["exec_command", "write_stdin", "request_user_input", "view_image"]


async def test_codex_default_tools_fail_on_lm_studios_tool_rejection(emulator, tmp_path):
    """Codex's default request carries a ``namespace`` and a ``web_search`` tool; LM Studio
    answers 400 and Codex shows that body and gives up, without a retry."""
    (tmp_path / "work").mkdir()
    run = await run_codex(emulator.url, "say hi", home=tmp_path / "home",
                          cwd=tmp_path / "work")
    assert run.returncode == 1 and run.turn_failed, run.explain()
    [generation] = emulator.generations  # a 400 is final for Codex
    assert generation.status == 400 and generation.outcome == "rejected"
    types = [tool["type"] for tool in generation.body["tools"]]
    assert {"namespace", "web_search"} <= set(types)
    rejected = {"error": {"message": "Invalid", "type": "invalid_request_error",
                          "param": f"tools.{types.index('namespace')}.type",
                          "code": "invalid_string"}}
    assert json.loads(run.errors[-1]) == rejected  # LM Studio's body, verbatim
    assert not run.commands and run.message is None
    assert run.egress == []


async def test_codex_function_tools_complete_a_tool_loop(emulator, tmp_path):
    """With function tools only, the emulated model calls exec_command, Codex runs it and
    sends the output back (the whole history again: store false), the model answers."""
    emulator.script(Reply(Call("exec_command", {"cmd": "echo hi"}, call_id="call_codex_1")),
                    Reply(Text("done")))
    (tmp_path / "work").mkdir()
    run = await run_codex(emulator.url, "Run `echo hi` in the shell, then say done.",
                          home=tmp_path / "home", cwd=tmp_path / "work",
                          extra_args=FUNCTION_TOOLS_ONLY)
    assert run.returncode == 0 and not run.turn_failed, run.explain()
    [command] = run.commands
    assert "echo hi" in command["command"], command
    assert command["exit_code"] == 0 and command["aggregated_output"] == "hi\n"
    assert run.message == "done"
    assert run.egress == []

    first, second = emulator.generations
    for generation in (first, second):
        assert generation.outcome == "completed"
        assert [t["type"] for t in generation.body["tools"]] == ["function"] * 4
        assert [t["name"] for t in generation.body["tools"]] == FUNCTION_TOOLS
        assert generation.body["store"] is False and "previous_response_id" not in generation.body
        # what a front keys the session on, and the configured env_key
        assert generation.headers["session-id"] == run.thread_id
        assert generation.body["prompt_cache_key"] == run.thread_id
        assert generation.headers["authorization"] == f"Bearer {TEST_API_KEY}"
    assert [item.get("role") for item in first.body["input"]] == [
        "developer", "developer", "user", "user"]
    assert second.body["input"][:4] == first.body["input"]
    echoed, output = second.body["input"][4:]
    assert echoed["type"] == "function_call" and echoed["call_id"] == "call_codex_1"
    assert echoed["name"] == "exec_command" and json.loads(echoed["arguments"]) == {
        "cmd": "echo hi"}
    assert echoed["id"].startswith("fc_")  # the emulator's own item id, echoed
    assert output["type"] == "function_call_output" and output["call_id"] == "call_codex_1"
    assert "Process exited with code 0" in output["output"] and "hi\n" in output["output"]


async def test_codex_resume_last_resends_the_thread(emulator, tmp_path):
    """``exec resume --last``: a new process continues the thread and sends its whole
    history again, with ``history_initialization: cold_resume``."""
    emulator.script(Reply(Text("first answer")), Reply(Text("second answer")))
    (tmp_path / "work").mkdir()
    where = {"home": tmp_path / "home", "cwd": tmp_path / "work",
             "extra_args": FUNCTION_TOOLS_ONLY}
    first = await run_codex(emulator.url, "say something", **where)
    assert first.returncode == 0 and first.message == "first answer", first.explain()
    second = await run_codex(emulator.url, "say more", resume=True, **where)
    assert second.returncode == 0 and second.message == "second answer", second.explain()
    assert second.thread_id == first.thread_id
    assert first.egress == second.egress == []

    turn1, turn2 = emulator.generations
    history = turn1.body["input"]
    assert turn2.body["input"][: len(history)] == history
    answer, prompt = turn2.body["input"][len(history):]
    assert answer["role"] == "assistant" and answer["content"][0]["text"] == "first answer"
    assert prompt["role"] == "user" and prompt["content"][-1]["text"] == "say more"
    assert turn2.headers["session-id"] == turn1.headers["session-id"] == first.thread_id
    metadata = [json.loads(g.headers["x-codex-turn-metadata"]) for g in (turn1, turn2)]
    assert [m["history_initialization"] for m in metadata] == ["new", "cold_resume"]
