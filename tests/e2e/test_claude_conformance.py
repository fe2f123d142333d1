"""Every error class lmsd can emit, through the real Claude Code CLI (2.1.337): what the CLI
does, and how many requests reach the engine because of it (docs/errors.md, "Claude Code
2.1.337 conformance"). Target: no request reaches the engine twice for the same failure.

2.1.337 follows a streamed failure with an identical non-streamed request, silently resends
an unknown 400 (then without its earlier thinking) when the conversation holds thinking,
and tries to compact after an overflow; lmsd answers each of those resends itself
(``protocol/clients/resends.py``). Each scenario has a clean first turn (a thinking block and a
Bash call) so the failing request carries earlier thinking, as in a real session.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.emulator import Call, Fault, Reasoning, Reply, Text
from tests.support.claude_cli import ClaudeRun, run_claude
from tests.support.upstream_key import KEY, NEEDS_KEY

pytestmark = pytest.mark.cli

OVERFLOW = ("Trying to keep the first 40000 tokens when context the overflows. However, the "
            "model is loaded with context length of only 32768 tokens, which is not enough. "
            "Try to load the model with a larger context length, or provide a shorter input")
#: Retries kept small where they are the subject, so the CLI gives up quickly.
BOUNDED = {"CLAUDE_CODE_MAX_RETRIES": "1", "API_TIMEOUT_MS": "20000"}


async def _second_turn_fails(start_lmsd: Any, emulator: Any, tmp_path: Any, fault: Fault,
                             **env: str) -> tuple[Any, ClaudeRun, int]:
    """A session whose first turn (thinking + a Bash call) succeeds and whose every later
    request meets ``fault``; the server, the run, and how many requests of the failing turn
    reached the engine."""
    (tmp_path / "tmp").mkdir()
    emulator.script(Reply(Reasoning("I will run it."),
                          Call("Bash", {"command": "echo one", "description": "Print one"})),
                    Reply(Text("done")))
    emulator.faults_after, emulator.fault_forever = 1, True
    emulator.inject(fault)
    server = await start_lmsd(emulator.url)
    run = await run_claude(server.url, "run echo one via bash, then say done",
                           home=tmp_path / "home", cwd=tmp_path, timeout=90,
                           extra_env={"TMPDIR": str(tmp_path / "tmp"), **BOUNDED, **env})
    first, *failing = emulator.generations
    assert first.outcome == "completed"
    return server, run, len(failing)


def _answered(server: Any) -> int:
    return sum(e["type"] == "request.resend_answered" for e in server.bus.recent)


async def test_a_refused_request_reaches_the_engine_once(start_lmsd, emulator, tmp_path):
    """Engine 4xx -> 400 with its words. 2.1.337 resends it (the thinking probe, then the
    non-streamed fallback): before, 4 requests reached the engine; now 1."""
    server, run, engine = await _second_turn_fails(
        start_lmsd, emulator, tmp_path, Fault.http(400, "Unsupported content in message 3"))
    assert run.returncode == 1 and run.result is not None and run.result["is_error"]
    assert "LM Studio rejected the request: Unsupported content" in (run.text or "")
    assert engine == 1
    assert _answered(server) >= 2  # the CLI did resend; lmsd answered


async def test_an_engine_overflow_reaches_the_engine_once(start_lmsd, emulator, tmp_path):
    """Engine overflow -> 400 "prompt is too long" (never the unknown-400 path): the CLI's
    non-streamed retry and its compaction attempts (larger still) are answered by lmsd;
    before, 8 requests reached the engine; now 1."""
    server, run, engine = await _second_turn_fails(start_lmsd, emulator, tmp_path,
                                                   Fault.http(400, OVERFLOW))
    assert run.returncode == 1 and (run.text or "").startswith("Prompt is too long"), run.stdout
    assert engine == 1
    assert _answered(server) >= 2
    too_long = [e["error"] for e in server.bus.recent if e["type"] == "request.rejected"]
    assert too_long and all(m.startswith("prompt is too long: ") for m in too_long)


async def test_an_overflow_in_the_stream_reaches_the_engine_once(start_lmsd, emulator,
                                                                 tmp_path):
    """The same overflow as an SSE error event from the engine."""
    server, run, engine = await _second_turn_fails(
        start_lmsd, emulator, tmp_path, Fault.error_event(message=OVERFLOW, code="overflow"))
    assert run.returncode == 1 and (run.text or "").startswith("Prompt is too long")
    assert engine == 1


async def test_a_prompt_refused_before_sending_never_reaches_the_engine(start_lmsd, emulator,
                                                                       tmp_path):
    """lmsd's own fit check: 400 "prompt is too long" at once, nothing sent."""
    emulator.models["qwen/qwen3-coder-30b"].context_length = 1000
    server = await start_lmsd(emulator.url)
    run = await run_claude(server.url, "hi", home=tmp_path / "home", cwd=tmp_path,
                           extra_env=BOUNDED)
    assert run.returncode == 1 and (run.text or "").startswith("Prompt is too long")
    assert emulator.generations == []
    assert any(e["type"] == "request.too_long" for e in server.bus.recent)


async def test_a_refused_key_reaches_the_engine_once(start_lmsd, emulator, tmp_path):
    """Upstream 401 -> 403: shown at once, no retry."""
    emulator.api_key = KEY
    server = await start_lmsd(emulator.url)
    run = await run_claude(server.url, "hi", home=tmp_path / "home", cwd=tmp_path,
                           extra_env=BOUNDED)
    assert run.returncode == 1 and NEEDS_KEY in (run.text or "")
    rejected = [e["status"] for e in server.bus.recent if e["type"] == "request.rejected"]
    assert rejected == [403]  # one request to lmsd, sent upstream once


async def test_a_missing_model_reaches_the_engine_once(start_lmsd, emulator, tmp_path):
    """Engine 404 -> 404 not_found_error; the CLI's non-streamed resend (milliseconds
    later) is answered by lmsd: before, 2 requests reached the engine; now 1."""
    server, run, engine = await _second_turn_fails(
        start_lmsd, emulator, tmp_path, Fault.http(404, "Model not found: qwen/qwen3-coder"))
    assert run.returncode == 1 and "issue with the selected model" in (run.text or "")
    assert engine == 1 and _answered(server) == 1


async def test_a_busy_engine_is_retried_as_the_cli_chooses(start_lmsd, emulator, tmp_path):
    """Engine 503 -> 529: the CLI backs off and gives up after 3; each retry may succeed,
    so each reaches the engine (3, before and after)."""
    server, run, engine = await _second_turn_fails(start_lmsd, emulator, tmp_path,
                                                   Fault.http(503, "Model is busy"))
    assert run.returncode == 1 and "Repeated 529 Overloaded errors" in (run.text or "")
    assert engine == 3 and _answered(server) == 0


async def test_a_stream_that_fails_after_the_start_is_retried_once(start_lmsd, emulator,
                                                                   tmp_path):
    """A crash after output began: an SSE error event; the CLI resends non-streamed at once,
    which may well succeed, so it reaches the engine (2, before and after)."""
    server, run, engine = await _second_turn_fails(start_lmsd, emulator, tmp_path,
                                                   Fault.error_event(after_events=3))
    assert run.returncode == 1 and "API Error: 502" in (run.text or "")
    assert engine == 2 and _answered(server) == 0


async def test_an_unreachable_engine_gets_nothing(start_lmsd, tmp_path, dead_port):
    """Nothing answers upstream: 503 with ``x-should-retry: false`` (a lasting state): the
    CLI shows the reason after one request instead of retrying for minutes."""
    server = await start_lmsd(f"http://127.0.0.1:{dead_port}")
    run = await run_claude(server.url, "hi", home=tmp_path / "home", cwd=tmp_path,
                           extra_env=BOUNDED)
    assert run.returncode == 1 and "API Error: 503" in (run.text or "")
    rejected = [e["status"] for e in server.bus.recent if e["type"] == "request.rejected"]
    assert rejected == [503]
