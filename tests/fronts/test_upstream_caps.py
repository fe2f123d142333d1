"""What an upstream sends is bounded too: a 20 MB error body is read to 64 KiB and passed
on (and logged) cut, saying so; a ``stream: false`` answer that keeps growing is stopped
at max_body_bytes with an error naming the cap, instead of growing lmsd without end."""

from __future__ import annotations

import pytest

from lmsd.upstreams.client import ERROR_BODY_CAP, ERROR_MESSAGE_CAP
from tests.emulator import Fault, Reply, Text
from tests.fronts.test_ingress import log_text  # noqa: F401 - a fixture
from tests.support.daemon import MODEL

REQUESTS = {
    "/v1/messages": {"model": "claude-sonnet-4-6", "max_tokens": 16,
                     "messages": [{"role": "user", "content": "hi"}]},
    "/v1/chat/completions": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
    "/v1/responses": {"model": MODEL, "input": "hi"},
}


def error_message(body: dict) -> str:
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message"))
    return str(body.get("response", {}).get("error", {}).get("message"))


async def test_a_20_mb_upstream_error_is_read_cut_and_logged_cut(
        emulator, http, log_text):  # noqa: F811 - the fixture
    emulator.inject(Fault.http(500, "y" * 20_000_000))
    response = await http.post("/v1/messages", json=REQUESTS["/v1/messages"])
    assert response.status_code >= 500
    assert len(response.content) < 3 * ERROR_MESSAGE_CAP
    message = error_message(response.json())
    assert "error was cut" in message and f"{ERROR_BODY_CAP // 1024} KiB" in message
    assert len(log_text.getvalue()) < 5 * 3 * ERROR_MESSAGE_CAP, "logged whole"


@pytest.mark.parametrize("path", list(REQUESTS))
async def test_a_stream_false_answer_past_the_cap_ends_with_an_error_naming_it(
        start_lmsd, emulator, path):
    """An upstream that sends far more than max_body_bytes (as one that never ends would):
    lmsd stops at the cap and says which."""
    cap = 256 * 1024
    lmsd = await start_lmsd(emulator.url, max_body_bytes=str(cap))
    emulator.chunk_size = 8192
    emulator.script(Reply(Text("z" * (16 * cap))))
    import httpx

    async with httpx.AsyncClient(base_url=lmsd.url, timeout=30) as http:
        response = await http.post(path, json={**REQUESTS[path], "stream": False})
    assert response.status_code >= 500, response.text[:300]
    assert len(response.content) < 4096
    message = error_message(response.json())
    assert f"{cap} bytes" in message and "max_body_bytes" in message
    assert "stream: true" in message
