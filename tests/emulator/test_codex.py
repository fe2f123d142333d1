"""The emulator toward what Codex CLI 0.171 sends (captured requests in
tests/fixtures/codex_0171.json): LM Studio's rejections of Codex's non-function tools and of
``text`` without ``format``, and acceptance of everything else Codex puts in a request."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.emulator import Call, Reasoning, Reply, Text
from tests.support.fixtures import codex_request

MODEL = "qwen/qwen3-coder-30b"
Start = Callable[..., Awaitable[tuple[Any, Any, str]]]
EXEC_COMMAND = {"type": "function", "name": "exec_command", "description": "Run a command",
                "strict": False, "parameters": {"type": "object", "properties": {
                    "cmd": {"type": "string"}}, "required": ["cmd"]}}


def codex_body(run: str, seq: int, *, function_tools_only: bool = False) -> dict[str, Any]:
    """A captured Codex body aimed at the emulator's model; optionally with only the
    `function` tools (what `-c web_search=disabled --disable multi_agent` leaves)."""
    body = codex_request(run, seq)["body"]
    body["model"] = MODEL
    if function_tools_only:
        body["tools"] = [t for t in body["tools"] if t["type"] == "function"]
    return body


async def post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    """POST /v1/responses; the JSON answer, or the list of SSE event payloads."""
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(f"{url}/v1/responses", json=body)
    if answer.headers["content-type"].startswith("text/event-stream"):
        return answer.status_code, [json.loads(line[len("data: "):])
                                    for line in answer.text.splitlines()
                                    if line.startswith("data: ")]
    return answer.status_code, answer.json()


def invalid(param: str, message: str = "Invalid", code: str = "invalid_string") -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param,
                      "code": code}}


# -- what LM Studio rejects ------------------------------------------------------------------


@pytest.mark.parametrize("tool", [
    {"type": "namespace", "name": "multi_agent_v1", "description": "agents", "tools": [
        {"type": "function", "name": "close_agent", "parameters": {"type": "object"}}]},
    {"type": "custom", "name": "apply_patch", "description": "patch",
     "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
    {"type": "web_search", "external_web_access": True},
    {"type": "tool_search", "execution": "client", "description": "find tools",
     "parameters": {"type": "object"}},
], ids=lambda tool: tool["type"])
async def test_non_function_tools_get_lm_studios_400(start: Start, tool: dict) -> None:
    emu, _, url = await start()
    status, body = await post(url, {"model": MODEL, "input": "hi", "stream": True,
                                    "tools": [EXEC_COMMAND, tool]})
    assert (status, body) == (400, invalid("tools.1.type"))
    assert emu.log[-1].outcome == "rejected" and emu.log[-1].reply is None


async def test_codex_default_tools_are_rejected_at_the_namespace(start: Start) -> None:
    """Codex's default tool set (an unknown model slug): the namespace at index 4 is the
    first tool LM Studio refuses (web_search at 8 would be next)."""
    _, _, url = await start()
    body = codex_body("resp-resume", 4)
    assert [t["type"] for t in body["tools"]][4::4] == ["namespace", "web_search"]
    assert await post(url, body) == (400, invalid("tools.4.type"))


async def test_codex_catalog_model_tools_are_rejected(start: Start) -> None:
    """``-m gpt-5.5`` adds custom apply_patch (index 3) and tool_search."""
    _, _, url = await start()
    body = codex_body("resp-known-model", 1)
    body.pop("text")
    assert await post(url, body) == (400, invalid("tools.3.type"))


@pytest.mark.parametrize("text", [{}, {"verbosity": "low"}])
async def test_text_without_format_is_rejected(start: Start, text: dict) -> None:
    """LM Studio requires ``text.format`` once ``text`` is there (#1576); Codex sends
    ``text: {verbosity}`` for a catalog model."""
    _, _, url = await start()
    body = codex_body("resp-known-model", 1, function_tools_only=True)
    assert body["text"] == {"verbosity": "low"}
    body["text"] = text
    assert await post(url, body) == (
        400, invalid("text.format", "Required", "missing_required_parameter"))


async def test_text_with_format_is_accepted(start: Start) -> None:
    _, _, url = await start()
    status, events = await post(url, {"model": MODEL, "input": "hi", "stream": True,
                                      "text": {"format": {"type": "text"}}})
    assert status == 200 and events[-1]["type"] == "response.completed"


# -- what LM Studio is assumed to accept (unverified: no rejection is invented) ---------------


@pytest.mark.parametrize(("run", "seq"), [
    ("resp-min-tools", 2),  # developer messages, client ids, the echoed call, its output
    ("resp-resume", 4),  # + an echoed assistant message with status and annotations
    ("reasoning-content", 2),  # + an echoed reasoning item, encrypted_content null
    ("resp-known-model", 1),  # reasoning {effort}, with text given a format
])
async def test_codex_requests_are_accepted(start: Start, run: str, seq: int) -> None:
    emu, _, url = await start()
    body = codex_body(run, seq, function_tools_only=True)
    if "text" in body:
        body["text"]["format"] = {"type": "text"}
    assert body["store"] is False and body["stream"] is True
    assert {"include", "prompt_cache_key", "client_metadata", "reasoning"} <= set(body)
    status, events = await post(url, body)
    assert status == 200, events
    assert events[-1]["type"] == "response.completed"
    [record] = emu.generations
    assert record.outcome == "completed" and record.context_items == body["input"]
    assert not emu.responses  # store: false


async def test_every_output_item_gets_output_item_done(start: Start) -> None:
    """Codex acts only on ``response.output_item.done``; without it, a completed response's
    output is silently ignored (codex-traffic 0.171/grammar-no_item_done)."""
    emu, _, url = await start()
    emu.script(Reply(Reasoning("plan"), Text("running it"),
                     Call("exec_command", {"cmd": "echo hi"}, args_mode="done_only")))
    status, events = await post(url, codex_body("resp-min-tools", 2, function_tools_only=True))
    assert status == 200
    output = events[-1]["response"]["output"]
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert done == output and [i["type"] for i in done] == ["reasoning", "message",
                                                            "function_call"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


async def test_default_policy_drives_codex_shell_tool(start: Start) -> None:
    """Unscripted, the emulated model calls Codex's exec_command, then says done."""
    _, client, _ = await start()
    first = await client.responses.create(model=MODEL, input="run it", tools=[EXEC_COMMAND])
    (call,) = first.output
    assert call.type == "function_call" and call.name == "exec_command"
    assert json.loads(call.arguments) == {"cmd": "echo hello-from-tool"}
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "hello"}
    second = await client.responses.create(model=MODEL, input=[result],
                                           previous_response_id=first.id, tools=[EXEC_COMMAND])
    assert second.output_text == "done"
