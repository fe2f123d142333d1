"""The bad-input corpus (tests/badinput/*.json): every malformed or hostile request gets a
clean 4xx in its front's shape (Anthropic's, or OpenAI's for ``/v1/chat/completions``)
that names the problem; never a 5xx, a hang or a traceback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
import trio

OPENAI_PATH = re.compile(r"^(/session/[^/]*)?/v1/chat/completions")
CORPUS = sorted((Path(__file__).parent.parent / "badinput").glob("*.json"))


def load(path: Path) -> tuple[dict, bytes | None]:
    case = json.loads(path.read_text())
    if "raw" in case:
        text = case["raw"]
    elif case.get("body") is None and case["method"] == "GET":
        text = None
    else:
        text = json.dumps(case["body"])
    for fill in case.get("expand", ()):
        text = text.replace(fill["placeholder"], fill["repeat"] * fill["times"])
    data = None if text is None else text.encode("utf-8", "surrogateescape")
    return case, data


def test_the_corpus_is_big_enough():
    assert len(CORPUS) >= 60
    assert sum(1 for p in CORPUS if p.stem.startswith("chat_")) >= 40


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
async def test_bad_input_gets_a_clean_4xx(http, emulator, path):
    case, data = load(path)
    expect = case["expect"]
    headers = {"content-type": "application/json", **case["headers"]}
    with trio.fail_after(30):  # never a hang
        response = await http.request(case["method"], case["path"], content=data,
                                      headers=headers)
    assert 400 <= response.status_code < 500, response.text[:500]
    assert response.status_code == expect["status"], response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()
    if OPENAI_PATH.search(case["path"]):  # OpenAI's shape: {"error": {message, type, ...}}
        assert set(error) == {"error"}
        assert set(error["error"]) == {"message", "type", "param", "code"}
    else:
        assert error["type"] == "error"
    assert error["error"]["type"] == expect["type"]
    assert expect["message_contains"] in error["error"]["message"]
    assert "Traceback" not in response.text
    if expect["status"] != 404 or expect["type"] != "not_found_error":
        assert all(g.status in (None, 400, 404) for g in emulator.generations)


async def test_the_daemon_still_serves_after_the_whole_corpus(http, emulator):
    for path in CORPUS:
        case, data = load(path)
        if len(data or b"") > 1_000_000:
            continue
        response = await http.request(case["method"], case["path"], content=data,
                                      headers={"content-type": "application/json",
                                               **case["headers"]})
        assert response.status_code < 500
    ok = await http.post("/v1/messages", json={"model": "claude-x", "max_tokens": 5,
                                               "messages": [{"role": "user", "content": "x"}]})
    assert ok.status_code == 200


async def test_an_incomplete_request_body_does_not_hang_the_daemon(lmsd, emulator):
    """A client that announces more bytes than it sends, then gives up."""
    host, port = lmsd.url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                          b"application/json\r\nContent-Length: 1000\r\n\r\n{\"model\"")
    await stream.aclose()
    async with httpx.AsyncClient(base_url=lmsd.url) as http:
        ok = await http.post("/v1/messages", json={
            "model": "claude-x", "max_tokens": 5, "messages": [{"role": "user",
                                                                 "content": "x"}]})
    assert ok.status_code == 200
