"""The steps of a turn that ``fronts/turn.py`` runs once for every front, checked through
each front's HTTP route: ``max_tokens_cap``, a session's ``allowedTools``, and the log of
the hosted tools a front drops. Each used to be written three times (and tested on one
or two fronts only)."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.emulator import Reply, Text
from tests.support.daemon import MODEL

SESSION = "turn-s1"
SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}}
#: Each front: its path, the header that names the session, a request with a
#: ``max_tokens`` of 100 and the tools Read and Bash, and a hosted tool of its API.
FRONTS = {
    "anthropic": ("/v1/messages", "x-claude-code-session-id", {
        "model": "claude-sonnet-4-6", "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": n, "description": n, "input_schema": SCHEMA}
                  for n in ("Read", "Bash")]},
        {"type": "web_search_20250305", "name": "web_search"}),
    "openai_chat": ("/v1/chat/completions", "x-session-id", {
        "model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": n, "parameters": SCHEMA}}
                  for n in ("Read", "Bash")]},
        None),
    "openai_responses": ("/v1/responses", "session-id", {
        "model": MODEL, "max_output_tokens": 100, "input": "hi",
        "tools": [{"type": "function", "name": n, "parameters": SCHEMA}
                  for n in ("Read", "Bash")]},
        {"type": "web_search"}),
}


async def _ask(url: str, front: str, **extra: object) -> httpx.Response:
    path, header, body, _ = FRONTS[front]
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        return await http.post(path, json={**body, **extra}, headers={header: SESSION})


def _stop(front: str, answer: dict) -> str:
    """How each front tells its client why the answer ended."""
    if front == "anthropic":
        return answer["stop_reason"]
    if front == "openai_chat":
        return answer["choices"][0]["finish_reason"]
    return answer["status"]


@pytest.mark.parametrize("front", list(FRONTS))
async def test_max_tokens_cap_lowers_what_every_front_sends(start_lmsd, emulator, front):
    """The cap reaches the upstream from every front. A cut at lmsd's cap is not the
    client's own limit to Claude Code and chat clients (end_turn, stop); the Responses
    front says ``incomplete`` as before (its encoder is not told of the cap)."""
    lmsd = await start_lmsd(emulator.url, max_tokens_cap="10")
    emulator.script(Reply(Text("long"), incomplete=True))
    answer = await _ask(lmsd.url, front)
    assert answer.status_code == 200, answer.text
    assert emulator.generations[0].body["max_output_tokens"] == 10
    assert _stop(front, answer.json()) == {
        "anthropic": "end_turn", "openai_chat": "stop", "openai_responses": "incomplete"}[front]


@pytest.mark.parametrize("front", list(FRONTS))
async def test_a_sessions_allowed_tools_drop_the_others_on_every_front(
        start_lmsd, emulator, front):
    lmsd = await start_lmsd(emulator.url)
    async with httpx.AsyncClient(base_url=lmsd.url, timeout=30) as http:
        put = await http.put(f"/session/{SESSION}/config", json={"allowedTools": ["Read"]})
        assert put.status_code == 200, put.text
    emulator.script(Reply(Text("ok")))
    answer = await _ask(lmsd.url, front)
    assert answer.status_code == 200, answer.text
    sent = emulator.generations[0].body
    assert [t["name"] for t in sent["tools"]] == ["Read"]


@pytest.mark.parametrize("front", [f for f, spec in FRONTS.items() if spec[3]])
async def test_a_dropped_hosted_tool_is_logged_with_its_front_and_request(
        lmsd, emulator, caplog, front):
    caplog.set_level(logging.DEBUG, logger="lmsd")
    emulator.script(Reply(Text("ok")))
    hosted = FRONTS[front][3]
    answer = await _ask(lmsd.url, front, tools=[*FRONTS[front][2]["tools"], hosted])
    assert answer.status_code == 200, answer.text
    fields = {r.getMessage(): r.lmsd_fields for r in caplog.records
              if hasattr(r, "lmsd_fields")}
    dropped, start = fields["request.server_tools_dropped"], fields["request.start"]
    assert dropped["front"] == start["front"] == front
    assert dropped["id"] == start["id"]
    assert dropped["tools"] == [hosted.get("name", hosted["type"])]
    assert [t["name"] for t in emulator.generations[0].body["tools"]] == ["Read", "Bash"]
