"""Every golden exchange (tests/golden/*.json, made by ``make.py`` from the captured Claude
Code and Codex requests) replayed through the current code: the client-visible stream
must be the recorded one. A failure prints the diff; if the change is wanted, run
``python -m tests.golden.make`` and review the files' diff."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from lmsd.daemon.replay import replay_file

FILES = sorted(Path(__file__).parent.glob("*.json"))


def test_there_are_golden_exchanges():
    assert len(FILES) >= 9


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_a_golden_exchange_replays_unchanged(path):
    diff, result = trio.run(replay_file, path)
    assert diff == [], "\n".join(diff)
    assert result["unmatched_upstream"] == []


def test_lmsd_replay_exits_1_and_shows_a_changed_stream(tmp_path, capsys):
    import json

    from lmsd.cli import main

    golden = Path(__file__).parent / "claude_basic_responses.json"
    exchange = json.loads(golden.read_text(encoding="utf-8"))
    [post] = [u for u in exchange["upstream"] if u["method"] == "POST"]
    texts = [c for c in post["chunks"] if '"delta"' in c[1]]
    assert texts, "the golden exchange streams deltas"
    texts[0][1] = texts[0][1].replace('"delta": "', '"delta": "CHANGED ', 1)
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(exchange), encoding="utf-8")
    assert main(["replay", str(golden)]) == 0
    assert main(["replay", str(changed)]) == 1
    out = capsys.readouterr().out
    assert "same client-visible result" in out and "differs" in out
    assert any(line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
               for line in out.splitlines())
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "lmsd.exchange", "version": 99}', encoding="utf-8")
    assert main(["replay", str(bad)]) == 2
