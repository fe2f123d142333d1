"""The real Claude Code CLI (2.1.329) through lmsd to the emulator."""

from __future__ import annotations

import itertools

import pytest
import trio

from tests.emulator import Call, Reply, Text
from tests.support.claude_cli import run_claude

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


async def test_claude_code_multi_turn_loop_is_chained(lmsd, emulator, tmp_path):
    """From turn 2 on, LM Studio gets previous_response_id and only the new items."""
    (tmp_path / "tmp").mkdir()
    emulator.script(
        Reply(Text("First command."), Call("Bash", {"command": "echo one",
                                                    "description": "Print one"})),
        Reply(Text("Second command."), Call("Bash", {"command": "echo two",
                                                     "description": "Print two"})),
        Reply(Text("done")),
    )
    run = await run_claude(
        lmsd.url, "run echo one, then echo two, via bash, then say done",
        home=tmp_path / "home", cwd=tmp_path, allowed_tools=["Bash"],
        extra_env={"TMPDIR": str(tmp_path / "tmp")},
    )
    assert run.returncode == 0, run.stderr + run.stdout
    assert run.result is not None and run.result["result"] == "done"
    gens = emulator.generations
    assert len(gens) == 3
    assert "previous_response_id" not in gens[0].body
    for before, after, expected in ((gens[0], gens[1], "one"), (gens[1], gens[2], "two")):
        assert after.body["previous_response_id"] == before.response_id
        [item] = after.body["input"]
        assert item["type"] == "function_call_output" and expected in item["output"]


async def test_claude_code_request_during_a_context_reload_completes(start_lmsd, emulator,
                                                                     tmp_path):
    """A model loaded at 4096 is raised to 32768 while Claude Code's request waits."""
    model = "qwen/qwen3-coder-30b"
    emulator.models[model].context_length = 4096
    emulator.load_delay = 2.0
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.2",
                              ping_interval="0.5")
    with trio.fail_after(10):
        while not server.router.backends[0].watcher.reloading(model):
            await trio.sleep(0.01)
    (tmp_path / "tmp").mkdir()
    emulator.script(Reply(Text("done")))
    run = await run_claude(server.url, "say done", home=tmp_path / "home", cwd=tmp_path,
                           extra_env={"TMPDIR": str(tmp_path / "tmp")})
    assert run.returncode == 0, run.stderr + run.stdout
    assert run.result is not None and run.result["result"] == "done"
    assert emulator.models[model].context_length == 32768
    [generation] = emulator.generations
    assert generation.model == model
    # the request really arrived during the reload and waited for it
    assert any(e["type"] == "request.waiting_for_reload" for e in server.bus.recent)


async def test_claude_code_recovers_from_a_mid_stream_failure(lmsd, emulator, tmp_path):
    """An upstream error mid-stream: Claude Code retries without streaming, and that
    retry succeeds through lmsd."""
    from tests.emulator import Fault

    (tmp_path / "tmp").mkdir()
    emulator.inject(Fault.error_event(after_events=6, message="engine hiccup",
                                      code="server_error"))
    emulator.script(Reply(Text("partial answer that will fail")), Reply(Text("done")))
    run = await run_claude(lmsd.url, "say done", home=tmp_path / "home", cwd=tmp_path,
                           extra_env={"TMPDIR": str(tmp_path / "tmp")})
    assert run.returncode == 0, run.stderr + run.stdout
    assert run.result is not None and run.result["result"] == "done"
    starts = [e for e in lmsd.bus.recent if e["type"] == "request.start"]
    assert [e["stream"] for e in starts] == [True, False]  # the non-streaming retry
    assert len(emulator.generations) == 2


async def test_claude_code_reports_a_context_overflow(lmsd, emulator, tmp_path):
    """LM Studio's context overflow reaches Claude Code as 'prompt is too long'."""
    (tmp_path / "tmp").mkdir()
    emulator.models["qwen/qwen3-coder-30b"].context_length = 2000
    run = await run_claude(lmsd.url, "say done", home=tmp_path / "home", cwd=tmp_path,
                           extra_env={"TMPDIR": str(tmp_path / "tmp")})
    assert run.returncode != 0
    assert run.result is not None and run.result.get("is_error") is True
    assert "prompt is too long" in (run.result.get("result") or "").lower() or \
        "prompt is too long" in (run.stdout + run.stderr).lower()
    # the upstream was not hammered with retries: Claude Code treats it as final
    assert len(emulator.generations) <= 6


@pytest.mark.parametrize(("wording", "mode"), [
    ("lmstudio", "http400"),
    ("lmstudio_n_keep", "stream_error"),  # the 502 that left a real session stuck
    ("lmstudio_0425", "http500"),
    ("llama_server", "http400"),
    ("openai", "response_failed"),
    ("vllm", "stream_error"),
])
async def test_claude_code_compacts_after_a_context_overflow_and_goes_on(lmsd, emulator,
                                                                         tmp_path,
                                                                         monkeypatch,
                                                                         wording, mode):
    """A longer scripted session outgrows the context, reported in each wording real
    servers use: lmsd answers 'prompt is too long', Claude Code compacts (its summary
    request chains onto the last good node), and the session carries on to the end."""
    import json

    import tests.emulator.state as state

    usual = state.default_reply

    def policy(context, tools):  # the emulated model writes summaries when asked
        if "CRITICAL: Respond with TEXT ONLY" in json.dumps(context[-1] if context else {}):
            return Reply(Text("<analysis>fine</analysis>\n<summary>The user asked for six "
                              "echo commands; they ran.</summary>"))
        return usual(context, tools)

    monkeypatch.setattr(state, "default_reply", policy)
    emulator.overflow_wording, emulator.overflow_mode = wording, mode
    emulator.models["qwen/qwen3-coder-30b"].context_length = 16000
    words = " ".join(["lorem"] * 800)  # each turn adds about 1.6k tokens
    emulator.script(*[Reply(Text(f"Step {i}."), Call("Bash", {
        "command": f"echo {words} {i}", "description": f"Step {i}"})) for i in range(6)],
        Reply(Text("done")))
    (tmp_path / "tmp").mkdir()
    run = await run_claude(lmsd.url, "run echo six times via bash, then say done",
                           home=tmp_path / "home", cwd=tmp_path,
                           extra_env={"TMPDIR": str(tmp_path / "tmp")}, timeout=300)
    assert run.returncode == 0, run.stderr + run.stdout
    assert run.result is not None and run.result["result"] == "done"
    gens = emulator.generations
    overflows = [g for g in gens if g.error]  # the engine itself reported the overflow
    compactions = [g for g in gens if "CRITICAL: Respond with TEXT ONLY" in json.dumps(
        g.new_items)]
    assert overflows and compactions
    assert all(g.error for g in gens if g.outcome not in ("completed", "incomplete"))
    # an overflow is not a stale chain: never a chained overflow followed by a full resend
    # of the same turn (which would only overflow again)
    for before, after in itertools.pairwise(gens):
        assert not (before.error and after.error and before.previous_response_id
                    and not after.previous_response_id
                    and before.new_items[-1:] == after.new_items[-1:])
    assert compactions[0].previous_response_id  # the summary request chained on
    assert gens[-1].outcome == "completed"
