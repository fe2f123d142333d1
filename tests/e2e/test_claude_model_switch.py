"""The real Claude Code CLI switching models in one session (``--model`` per run,
``--resume`` between them), through lmsd to the emulated LM Studio whose memory budget
holds one of the two models: each switch is one swap (the other model unloaded, this one
loaded once at min_context), every run answers, and the conversation crosses the switches
whole."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.emulator import Reply, Text
from tests.support.claude_cli import run_claude
from tests.support.daemon import MODEL

pytestmark = pytest.mark.cli

OTHER = "google/gemma-3-12b"


def calls(emulator: Any, path: str) -> list[Any]:
    return [r.body for r in emulator.log if r.path == path]


async def test_a_session_switches_models_and_each_switch_is_one_swap(
        start_lmsd, emulator, tmp_path):
    server = await start_lmsd(emulator.url, watch="true", poll_interval="0.2",
                              memory_budget="20GB")
    (tmp_path / "tmp").mkdir()
    session = str(uuid.uuid4())
    where: dict[str, Any] = {"home": tmp_path / "home", "cwd": tmp_path,
                             "allowed_tools": [], "extra_env": {"TMPDIR": str(tmp_path / "tmp")}}
    runs = []
    for model, resume, answer in ((MODEL, False, "first on qwen"),
                                  (OTHER, True, "then on gemma"),
                                  (MODEL, True, "back on qwen")):
        emulator.script(Reply(Text(answer)))
        flags = ["--model", model, *(["--resume", session] if resume else
                                     ["--session-id", session])]
        run = await run_claude(server.url, f"say: {answer}", extra_args=flags, **where)
        assert run.returncode == 0, run.stderr + run.stdout
        assert run.result is not None and run.result["result"] == answer, run.stdout
        runs.append(run)
    main = [g for g in emulator.generations if "say:" in str(g.body)]
    assert [g.model for g in main] == [MODEL, OTHER, MODEL]
    started = [e for e in server.bus.recent if e["type"] == "request.start"
               and e.get("session") == session]
    assert [e["model"] for e in started if e["model"] in (MODEL, OTHER)][-3:] == \
        [MODEL, OTHER, MODEL], "lmsd saw the three runs as one session"
    # one swap per switch: gemma loaded (qwen out), then qwen loaded (gemma out)
    assert [b["instance_id"] for b in calls(emulator, "/api/v1/models/unload")] == [MODEL, OTHER]
    assert [(b["model"], b["context_length"]) for b in calls(emulator, "/api/v1/models/load")
            ] == [(OTHER, 32768), (MODEL, 32768)]
    swaps = [e for e in server.bus.recent if e["type"] == "model.swap"]
    assert [(e["model"], e["unloaded"]) for e in swaps] == [(OTHER, [MODEL]), (MODEL, [OTHER])]
    # the conversation crossed both switches whole: the last turn carries the first two
    last = str(main[-1].context_items or main[-1].body)
    assert "first on qwen" in last and "then on gemma" in last
