"""Text a client adds later in a conversation (a system reminder, a per-step token
countdown such as Claude Code's ``CLAUDE_CODE_TOTAL_TOKENS_REMINDER``) is never moved
before earlier turns: for every upstream kind, what lmsd sends for turn N starts with
exactly what it sent for turn N-1, byte for byte, so the engine's prefix cache holds.
(Ollama had to switch Claude Code's countdown off because hoisting it to the front broke
the KV cache: ollama PR #17918.)

The conversations are long tool loops grown from a captured Claude Code request
(``tests/fixtures/interactive.json``: its system prompt with the billing header, its 13
tools, its first user turn with ``<system-reminder>`` blocks and the ``role: "system"``
environment message after it), and Codex- and chat-shaped ones with late
``developer``/``system`` messages. Each request is encoded in full (unchained) for each
upstream dialect; the prompt is serialized as the engine's template would lay it out:
the head (instructions or system, tools) and then each conversation item in order."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lmsd.protocol.anthropic.items import conversation as anthropic_conversation
from lmsd.protocol.anthropic.request import validate_messages_request
from lmsd.protocol.chat.front import validate_chat_request
from lmsd.protocol.pivot import Conversation
from lmsd.protocol.plan import plan_messages_turn, plan_stateless_turn, plan_turn
from lmsd.protocol.responses.front import parse_request

FIXTURE = Path(__file__).parents[1] / "fixtures" / "interactive.json"
STEPS = 12
MODEL = "qwen/qwen3-coder-30b"

# -- the upstream dialects, and the prompt each lays out -----------------------------------


def responses(conv: Conversation) -> tuple[Any, list[Any]]:
    body = plan_turn(conv, model=MODEL, nodes=(), chaining=False).full
    return [body.get("instructions"), body.get("tools")], body["input"]


def chat(conv: Conversation, named_as_required: bool = False) -> tuple[Any, list[Any]]:
    body = plan_stateless_turn(conv, model=MODEL, named_as_required=named_as_required).full
    return [body.get("tools")], body["messages"]  # the system message is the first item


def llama_server_chat(conv: Conversation) -> tuple[Any, list[Any]]:
    return chat(conv, named_as_required=True)


def messages(conv: Conversation) -> tuple[Any, list[Any]]:
    body = plan_messages_turn(conv, model=MODEL, session="s").full
    return [body.get("system"), body.get("tools")], body["messages"]


DIALECTS: dict[str, Callable[[Conversation], tuple[Any, list[Any]]]] = {
    "responses": responses, "chat": chat, "llama_server_chat": llama_server_chat,
    "messages": messages}


def serialized(head: Any, items: list[Any]) -> list[bytes]:
    """The prompt as the engine sees it, in order: the head, then one chunk per item."""
    return [json.dumps(head, sort_keys=True).encode()] + [
        json.dumps(item, sort_keys=True).encode() for item in items]


def assert_prefix_stable(conversations: list[Conversation]) -> None:
    """Each request's serialized prompt starts with the whole previous one, byte for byte
    (an item the previous request ended with may not change either: an engine's cache
    holds the previous prompt up to its end)."""
    for name, encode in DIALECTS.items():
        before: list[bytes] | None = None
        for n, conv in enumerate(conversations):
            now = serialized(*encode(conv))
            if before is not None:
                assert len(now) > len(before), f"{name}: request {n} sends no new items"
                for i, chunk in enumerate(before):
                    if now[i] != chunk:  # not ``assert``: pytest would diff the whole prompts
                        raise AssertionError(
                            f"{name}: request {n} changed item {i - 1} of request {n - 1}:\n"
                            f"{chunk[:300]!r}\nbecame\n{now[i][:300]!r}")
            before = now


# -- Claude Code (Anthropic Messages front) ------------------------------------------------


def claude_code_start() -> dict[str, Any]:
    """The captured first request of an interactive session (system, tools, first turn)."""
    capture = json.loads(FIXTURE.read_text())
    body = copy.deepcopy(capture["requests"][0]["body"])
    assert body["messages"][1]["role"] == "system"  # the environment, after the first turn
    return body


def countdown(step: int) -> str:
    return f"<system-reminder>\nTokens left in this task: {200_000 - 1_500 * step}\n" \
           f"</system-reminder>"


def claude_code_requests(where: str) -> list[Conversation]:
    """A long tool loop: each step the model calls Bash, the client answers with the
    result and a token countdown, ``where``: a late ``role: "system"`` message after the
    result, a text block inside the result's user turn, or (``"user"``) after a user's
    own text turn."""
    body = claude_code_start()
    history = body["messages"]
    out = []
    for step in range(STEPS):
        request = copy.deepcopy(body)
        request["messages"] = copy.deepcopy(history)
        billing = request["system"][0]  # the billing header changes on every request
        billing["text"] = billing["text"].rstrip(";") + f"; cch={step:05x};"
        out.append(anthropic_conversation(validate_messages_request(request)))
        call = f"toolu_{step:04d}"
        history.append({"role": "assistant", "content": [
            {"type": "thinking", "thinking": f"step {step}", "signature": "sig"},
            {"type": "text", "text": f"Step {step}."},
            {"type": "tool_use", "id": call, "name": "Bash",
             "input": {"command": f"echo {step}", "description": "Print"}}]})
        result = {"type": "tool_result", "tool_use_id": call, "content": f"{step}\n"}
        if where == "inside":
            history.append({"role": "user", "content": [
                result, {"type": "text", "text": countdown(step)}]})
        else:
            history.append({"role": "user", "content": [result]})
            if where == "user":  # the user speaks, then the countdown follows
                history.append({"role": "assistant", "content": [
                    {"type": "text", "text": "Done. What next?"}]})
                history.append({"role": "user", "content": f"now step {step + 1}"})
            history.append({"role": "system", "content": countdown(step)})
    return out


@pytest.mark.parametrize("where", ["system_message", "inside", "user"])
def test_claude_code_countdown_never_moves_before_earlier_turns(where):
    conversations = claude_code_requests(where)
    assert "cch=" not in conversations[-1].instructions  # the billing header is dropped
    assert_prefix_stable(conversations)


def test_the_countdown_stays_where_the_client_put_it():
    """Not hoisted into the instructions or the system prompt, on any upstream kind."""
    last = claude_code_requests("system_message")[-1]
    for name, encode in DIALECTS.items():
        head, items = encode(last)
        assert "Tokens left" not in json.dumps(head), name
        texts = [json.dumps(item) for item in items]
        where = [i for i, t in enumerate(texts) if "Tokens left" in t]
        assert len(where) == STEPS - 1, name
        assert "Tokens left" not in texts[0], name  # not before the first turn


# -- Codex (Responses front) and chat clients, with late developer/system messages -----------


def responses_front_requests() -> list[Conversation]:
    """Codex-shaped: instructions, a leading developer message, the user's turn; each
    step a function call and its output, then a late ``developer`` countdown."""
    items: list[dict[str, Any]] = [
        {"type": "message", "role": "developer",
         "content": [{"type": "input_text", "text": "<permissions>sandboxed</permissions>"}]},
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "fix the tests"}]}]
    tools = [{"type": "function", "name": "shell", "description": "Run a command",
              "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}]
    out = []
    for step in range(STEPS):
        body = {"model": "gpt-5-codex", "instructions": "You are Codex.", "tools": tools,
                "input": copy.deepcopy(items), "stream": True}
        out.append(parse_request(body).conversation)
        call = f"call_{step}"
        items += [
            {"type": "function_call", "call_id": call, "name": "shell",
             "arguments": json.dumps({"cmd": f"echo {step}"})},
            {"type": "function_call_output", "call_id": call, "output": f"{step}"},
            {"type": "message", "role": "developer",
             "content": [{"type": "input_text", "text": countdown(step)}]}]
    return out


def chat_front_requests() -> list[Conversation]:
    """An OpenAI chat client: a system prompt, then tool calls, each followed by a late
    ``system`` countdown."""
    history: list[dict[str, Any]] = [{"role": "system", "content": "You code."},
                                     {"role": "user", "content": "fix the tests"}]
    tools = [{"type": "function", "function": {
        "name": "shell", "parameters": {"type": "object", "properties": {}}}}]
    out = []
    for step in range(STEPS):
        body = {"model": "m", "messages": copy.deepcopy(history), "tools": tools}
        out.append(validate_chat_request(body).conversation)
        call = f"call_{step}"
        history += [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call, "type": "function",
                 "function": {"name": "shell", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": call, "content": f"{step}"},
            {"role": "system", "content": countdown(step)}]
    return out


@pytest.mark.parametrize("front", [responses_front_requests, chat_front_requests],
                         ids=["responses_front", "chat_front"])
def test_late_developer_and_system_messages_stay_in_place(front):
    conversations = front()
    assert "Tokens left" not in conversations[-1].instructions
    assert_prefix_stable(conversations)


def test_the_harness_catches_a_hoisted_countdown():
    """What Ollama did (the latest system text joined to the system prompt): every turn
    would re-prefill from the very start. The check above must see it."""
    hoisted = []
    for conv in claude_code_requests("inside"):
        texts = [p.text for turn in conv.turns for item in turn
                 for p in getattr(item, "parts", ()) if "Tokens left" in getattr(p, "text", "")]
        hoisted.append(Conversation(instructions=conv.instructions + "".join(texts[-1:]),
                                    turns=conv.turns, tools=conv.tools))
    with pytest.raises(AssertionError, match="changed item -1"):
        assert_prefix_stable(hoisted)
