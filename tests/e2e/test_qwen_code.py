"""The real Qwen Code CLI (a chat-completions coding agent) through lmsd's
``/v1/chat/completions`` to the LM Studio emulator: a tool loop that really writes a file,
chained upstream."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.emulator import Call, Reply, Text
from tests.support.qwen_cli import run_qwen

pytestmark = pytest.mark.cli


def model_policy(target: Path):
    """What the emulated model answers: write the file when asked, then say done."""

    def answer(record) -> Reply:
        last = record.context_items[-1] if record.context_items else {}
        names = {t.get("name") for t in record.tools if isinstance(t, dict)}
        if last.get("type") == "function_call_output":
            return Reply(Text("done: the file is written"))
        if "write_file" in names and not target.exists():
            return Reply(Call("write_file", {"file_path": str(target),
                                             "content": "hello from lmsd\n"}))
        return Reply(Text("ok"))

    return answer


async def test_qwen_code_writes_a_file_through_lmsd(lmsd, emulator, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    target = work / "hello.txt"
    emulator.script(*[model_policy(target)] * 12)
    run = await run_qwen(lmsd.url, "Create hello.txt saying hello, then say done.",
                         home=tmp_path / "home", cwd=work)
    assert run.returncode == 0, run.explain()
    assert target.read_text() == "hello from lmsd\n"
    result = run.result()
    assert result is not None and "done" in str(result.get("result")), run.explain()

    followup = next(g for g in emulator.generations if g.context_items and
                    g.context_items[-1].get("type") == "function_call_output")
    # chained: LM Studio already holds the call, so only the tool's output went up
    call = next(i for i in followup.context_items if i.get("type") == "function_call")
    assert call["name"] == "write_file"
    assert followup.body.get("previous_response_id"), [g.body for g in emulator.generations]
    assert [i["type"] for i in followup.body["input"]] == ["function_call_output"]
    ends = [e for e in lmsd.bus.recent if e["type"] == "request.end"]
    assert ends and all(e["front"] == "openai_chat" and e["outcome"] == "ok" for e in ends)
