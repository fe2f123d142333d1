"""The Responses bad-input corpus (tests/badinput/responses/*.json): every malformed
request to ``POST /v1/responses`` gets a clean OpenAI-shaped 4xx naming the problem (Codex
shows a 400 verbatim and never retries it); never a 5xx, a hang or a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.fronts.test_bad_input import load

CORPUS = sorted((Path(__file__).parent.parent / "badinput" / "responses").glob("*.json"))


def test_the_corpus_is_big_enough():
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
async def test_bad_input_gets_a_clean_openai_4xx(http, emulator, path):
    case, data = load(path)
    expect = case["expect"]
    headers = {"content-type": "application/json", **case["headers"]}
    with trio.fail_after(30):  # never a hang
        response = await http.request(case["method"], case["path"], content=data,
                                      headers=headers)
    assert response.status_code == expect["status"], response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == expect["type"]
    assert expect["message_contains"] in error["message"], error["message"]
    assert "Traceback" not in response.text
    assert emulator.generations == []
