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
