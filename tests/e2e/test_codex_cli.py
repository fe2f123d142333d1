"""The real Codex CLI (0.171.0) straight to the LM Studio emulator, without lmsd.

This proves the driver (tests/support/codex_cli.py) and the emulator against the real
client, ahead of lmsd's /v1/responses front: with its default tools Codex cannot talk to
LM Studio at all (the bug that front fixes); with function tools only it can.
"""

from __future__ import annotations

import json

import pytest

from tests.emulator import Call, Fault, Reply, Text
from tests.emulator.overflow import overflow_message
from tests.support.codex_cli import FUNCTION_TOOLS_ONLY, MODEL, TEST_API_KEY, run_codex

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


# -- through lmsd's /v1/responses front ----------------------------------------------------


def _responses(emulator):
    return [g for g in emulator.generations if g.path == "/v1/responses"]


async def test_codex_default_tools_work_through_lmsd(lmsd, emulator, tmp_path):
    """Codex's default tools (namespace multi_agent_v1, web_search) reach LM Studio as
    function tools only; the exec_command loop runs and the resend chains."""
    emulator.script(Reply(Call("exec_command", {"cmd": "echo hi"}, call_id="call_codex_1")),
                    Reply(Text("done")))
    (tmp_path / "work").mkdir()
    run = await run_codex(lmsd.url, "Run `echo hi` in the shell, then say done.",
                          home=tmp_path / "home", cwd=tmp_path / "work")
    assert run.returncode == 0 and not run.turn_failed, run.explain()
    [command] = run.commands
    assert command["exit_code"] == 0 and command["aggregated_output"] == "hi\n"
    assert run.message == "done"
    assert run.egress == []
    first, second = _responses(emulator)
    for generation in (first, second):
        assert {t["type"] for t in generation.body["tools"]} == {"function"}
        names = [t["name"] for t in generation.body["tools"]]
        assert "exec_command" in names and "multi_agent_v1__close_agent" in names
        assert generation.body["store"] is True
    assert "previous_response_id" not in first.body
    assert second.body["previous_response_id"] == first.response_id
    [output] = second.body["input"]  # only the new item
    assert output["type"] == "function_call_output" and output["call_id"] == "call_codex_1"
    assert run.usage and run.usage["input_tokens"] > 0


async def test_codex_namespaced_call_runs_through_lmsd(lmsd, emulator, tmp_path):
    """A flattened namespaced call goes back as ``function_call{name, namespace}``: Codex
    runs it (close_agent answers "invalid agent id"), not "unsupported call"."""
    emulator.script(Reply(Call("multi_agent_v1__close_agent", {"target": "nobody"},
                               call_id="call_ns")), Reply(Text("ok")))
    (tmp_path / "work").mkdir()
    run = await run_codex(lmsd.url, "close the agent", home=tmp_path / "home",
                          cwd=tmp_path / "work")
    assert run.returncode == 0, run.explain()
    second = _responses(emulator)[1]
    [output] = second.body["input"]
    assert output["call_id"] == "call_ns"
    assert "unsupported call" not in output["output"], output


async def test_codex_resume_last_chains_through_lmsd(lmsd, emulator, tmp_path):
    """``exec resume --last`` is a new process: lmsd chains it from its store."""
    emulator.script(Reply(Text("first answer")), Reply(Text("second answer")))
    (tmp_path / "work").mkdir()
    where = {"home": tmp_path / "home", "cwd": tmp_path / "work"}
    first = await run_codex(lmsd.url, "say something", **where)
    assert first.returncode == 0 and first.message == "first answer", first.explain()
    second = await run_codex(lmsd.url, "say more", resume=True, **where)
    assert second.returncode == 0 and second.message == "second answer", second.explain()
    turn1, turn2 = _responses(emulator)
    assert turn2.body["previous_response_id"] == turn1.response_id
    [prompt] = turn2.body["input"]
    assert prompt["role"] == "user" and prompt["content"][-1]["text"] == "say more"


async def test_codex_overflow_through_lmsd_runs_out_of_room(start_lmsd, emulator, tmp_path):
    """LM Studio's overflow (its own wording, no code) ends as ``context_length_exceeded``:
    Codex says it ran out of room, exits 1 and does not retry."""
    emulator.models[MODEL].context_length = 2000  # Codex's first request is ~10k tokens
    server = await start_lmsd(emulator.url)
    (tmp_path / "work").mkdir()
    run = await run_codex(server.url, "say hi", home=tmp_path / "home",
                          cwd=tmp_path / "work")
    assert run.returncode == 1 and run.turn_failed, run.explain()
    assert any("ran out of room" in e for e in run.errors), run.errors
    assert len(_responses(emulator)) <= 1  # refused before sending, or one attempt


@pytest.mark.parametrize("fault", ["error_event", "failed"])
async def test_codex_engine_overflow_mid_stream_through_lmsd(lmsd, emulator, tmp_path, fault):
    """LM Studio's overflow inside its stream (an SSE ``error`` event or ``response.failed``,
    in its own words, no code) reaches Codex as ``response.failed`` with
    ``context_length_exceeded``: "ran out of room", exit 1, no retry."""
    said = overflow_message("lmstudio", 12000, 8000)
    emulator.inject(getattr(Fault, fault)(message=said, code="server_error"))
    (tmp_path / "work").mkdir()
    run = await run_codex(lmsd.url, "say hi", home=tmp_path / "home", cwd=tmp_path / "work")
    assert run.returncode == 1 and run.turn_failed, run.explain()
    assert any("ran out of room" in e for e in run.errors), run.errors
    assert len(_responses(emulator)) == 1  # never retried


async def test_codex_apply_patch_creates_a_file_through_lmsd(lmsd, emulator, tmp_path):
    """A catalog slug brings the custom apply_patch tool: sent as a function with an
    ``input`` string, returned as ``custom_tool_call``, applied by Codex."""
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hello from lmsd\n*** End Patch\n"
    emulator.script(Reply(Call("apply_patch", {"input": patch}, call_id="call_patch")),
                    Reply(Text("patched")))
    work = tmp_path / "work"
    work.mkdir()
    run = await run_codex(lmsd.url, "create hello.txt", home=tmp_path / "home", cwd=work,
                          model="gpt-5.5")
    assert run.returncode == 0, run.explain()
    assert (work / "hello.txt").read_text() == "hello from lmsd\n"
    first = _responses(emulator)[0]
    assert first.body["model"] == MODEL
    assert {t["type"] for t in first.body["tools"]} == {"function"}


async def test_codex_response_failed_through_lmsd(lmsd, emulator, tmp_path):
    """A failure after the stream started is ``response.failed``: Codex retries it (5
    times) and reports the message, never a silent success."""
    emulator.inject(*[Fault.failed("engine crashed")] * 6)
    (tmp_path / "work").mkdir()
    run = await run_codex(lmsd.url, "say hi", home=tmp_path / "home", cwd=tmp_path / "work",
                          provider={"stream_max_retries": 1})
    assert run.returncode == 1 and run.turn_failed, run.explain()
    assert any("engine crashed" in e for e in run.errors), run.errors


async def test_codex_auto_compaction_through_lmsd(lmsd, emulator, tmp_path):
    """Usage over ``model_auto_compact_token_limit`` (lmsd reports the whole context)
    makes Codex compact before its next turn: the compaction request keeps the thread's
    tools with ``tool_choice: "none"`` and chains; the rebuilt window is sent in full."""
    emulator.script(Reply(Text("first answer")), Reply(Text("SUMMARY of the work")),
                    Reply(Text("second answer")))
    (tmp_path / "work").mkdir()
    where = {"home": tmp_path / "home", "cwd": tmp_path / "work",
             "config": {"model_context_window": 64000,
                        "model_auto_compact_token_limit": 4000}}
    first = await run_codex(lmsd.url, "say something", **where)
    assert first.returncode == 0 and first.message == "first answer", first.explain()
    second = await run_codex(lmsd.url, "say more", resume=True, **where)
    assert second.returncode == 0 and second.message == "second answer", second.explain()
    turn1, compaction, turn2 = _responses(emulator)  # lmsd's requests to LM Studio
    assert "CONTEXT CHECKPOINT COMPACTION" in json.dumps(compaction.body["input"])
    assert compaction.body["previous_response_id"] == turn1.response_id
    assert compaction.body["tools"] == turn1.body["tools"]
    assert compaction.body["tool_choice"] == "none"
    assert "previous_response_id" not in turn2.body  # a new window: a new chain
    assert "SUMMARY of the work" in json.dumps(turn2.body["input"])
