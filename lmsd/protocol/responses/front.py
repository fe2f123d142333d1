"""An OpenAI Responses request (Codex CLI's) -> the pivot :class:`~..pivot.Conversation`.

Codex resends the whole history on every request (``store: false``), with its own item ids
and the ids of lmsd's earlier answers. Everything that does not change what the model
sees is stripped (ids, status, reasoning echoes, annotations), so that Codex's echo of an
answer is exactly the turn lmsd stored for it (``reply.py``) and the chain matcher sends
LM Studio ``previous_response_id`` plus the new items only.

A generic client's ``previous_response_id`` is expanded to that history before this
(``previous.py``), so the request parsed here is always the whole conversation.

Turns: the items of one assistant answer (messages and calls, up to the next client item)
form one turn, as the reply stores it; every client item (a message, a tool's output) is a
turn of its own. The leading ``developer``/``system`` messages are the instructions; a
later one is user text wrapped in ``<system-reminder>`` (local chat templates reject a
system turn after the first message).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..failures import invalid
from ..pivot import (
    Conversation,
    FunctionCall,
    FunctionCallOutput,
    Image,
    Item,
    Message,
    Part,
    Text,
    ToolChoice,
    Turn,
    dumps,
)
from ..tokens import IMAGE_TOKENS, MESSAGE_OVERHEAD, TOOL_OVERHEAD, text_tokens
from .tools import NAME, ToolMap, convert_tools

SYSTEM_OPEN, SYSTEM_CLOSE = "<system-reminder>\n", "\n</system-reminder>"
#: Accepted and not sent upstream (``codex-front.md`` section 2); ``text`` is listed when
#: it carries a ``format`` (structured output), which the pivot cannot express yet.
IGNORED_FIELDS = ("include", "prompt_cache_key", "client_metadata", "reasoning", "store",
                  "metadata", "user", "service_tier", "truncation", "safety_identifier",
                  "background", "prompt_cache_retention", "stream_options", "top_logprobs")
KNOWN_FIELDS = frozenset({"model", "input", "instructions", "tools", "tool_choice",
                          "parallel_tool_calls", "stream", "max_output_tokens", "temperature",
                          "top_p", "text", "previous_response_id", *IGNORED_FIELDS})
_TEXT_PARTS = ("input_text", "output_text", "text", "refusal")


@dataclass
class ResponsesRequest:
    """A validated request: the conversation and what the front needs besides."""

    conversation: Conversation
    model: str
    stream: bool
    tools: ToolMap
    prompt_cache_key: str | None = None
    request_kind: str = "turn"
    estimate: int = 0
    notes: dict[str, Any] = field(default_factory=dict)  # what was dropped, for the log


def _expect(value: Any, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    if not isinstance(value, kind):
        raise invalid(f"{where}: expected {what}")
    return value


def _number(body: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise invalid(f"{key}: expected a number from {lo:g} to {hi:g}")
    return float(value)


def _parts(content: Any, where: str) -> tuple[Part, ...]:
    if isinstance(content, str):
        return (Text(content),)
    _expect(content, list, where, "a string or an array of content parts")
    parts: list[Part] = []
    for i, part in enumerate(content):
        at = f"{where}[{i}]"
        _expect(part, dict, at, "an object")
        kind = part.get("type")
        if kind in _TEXT_PARTS:
            text = part.get("refusal") if kind == "refusal" else part.get("text")
            parts.append(Text(_expect(text, str, f"{at}.text", "a string")))
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise invalid(f"{at}.image_url: expected a data URL (file_id is not "
                              f"supported)")
            parts.append(Image(url))
        else:
            raise invalid(f"{at}.type: {kind!r} is not supported (input_text, output_text, "
                          f"input_image)")
    return tuple(parts)


def _output(value: Any, where: str) -> tuple[str, tuple[Image, ...]]:
    """A tool output: a string, or content parts whose text is joined, images kept."""
    if isinstance(value, str):
        return value, ()
    parts = _parts(value, where)
    text = "\n".join(p.text for p in parts if isinstance(p, Text))
    return text, tuple(p for p in parts if isinstance(p, Image))


def _string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or (key in ("call_id", "name") and not value):
        raise invalid(f"{where}.{key}: expected a {'non-empty ' if key != 'arguments' else ''}"
                      f"string")
    return value


def assistant_item(item: dict[str, Any], where: str, tools: ToolMap) -> Item | None:
    """One item of an assistant answer as the pivot holds it (None: not sent upstream)."""
    kind = item.get("type", "message")
    if kind == "reasoning":
        return None  # LM Studio holds reasoning through the chain; Codex echoes it
    if kind == "function_call":
        namespace = item.get("namespace")
        if namespace is not None and (not isinstance(namespace, str) or not NAME.match(namespace)):
            raise invalid(f"{where}.namespace: expected a tool namespace name")
        name = _string(item, "name", where)
        return FunctionCall(_string(item, "call_id", where),
                            tools.upstream_name(namespace, name),
                            _string(item, "arguments", where))
    if kind == "custom_tool_call":
        name = _string(item, "name", where)
        return FunctionCall(_string(item, "call_id", where), tools.upstream_name(None, name),
                            dumps({"input": _string(item, "input", where)}))
    return Message("assistant", _parts(item.get("content"), f"{where}.content"))


def _is_assistant(item: dict[str, Any]) -> bool:
    kind = item.get("type", "message")
    if kind == "message":
        return item.get("role") == "assistant"
    return kind in ("reasoning", "function_call", "custom_tool_call")


def _client_item(item: dict[str, Any], where: str) -> Item | None:
    kind = item.get("type", "message")
    if kind in ("function_call_output", "custom_tool_call_output"):
        output, images = _output(item.get("output"), f"{where}.output")
        return FunctionCallOutput(_string(item, "call_id", where), output, images)
    if kind != "message":
        raise invalid(f"{where}.type: {kind!r} is not an input item lmsd serves (message, "
                      f"function_call, function_call_output, custom_tool_call, "
                      f"custom_tool_call_output, reasoning)")
    role = item.get("role")
    parts = _parts(item.get("content"), f"{where}.content")
    if role == "user":
        return Message("user", parts)
    if role in ("developer", "system"):
        text = "\n\n".join(p.text for p in parts if isinstance(p, Text))
        return Message("user", (Text(SYSTEM_OPEN + text + SYSTEM_CLOSE),)) if text else None
    raise invalid(f"{where}.role: expected user, assistant, developer or system")


def _turns(items: list[Any], tools: ToolMap) -> tuple[list[str], tuple[Turn, ...]]:
    """(the leading developer/system texts, the turns)."""
    instructions: list[str] = []
    turns: list[Turn] = []
    answer: list[Item] = []
    leading = True
    for i, item in enumerate(items):
        where = f"input[{i}]"
        _expect(item, dict, where, "an object")
        if leading and item.get("type", "message") == "message" and \
                item.get("role") in ("developer", "system"):
            parts = _parts(item.get("content"), f"{where}.content")
            instructions += [p.text for p in parts if isinstance(p, Text) and p.text]
            continue
        leading = False
        if _is_assistant(item):
            if (converted := assistant_item(item, where, tools)) is not None:
                answer.append(converted)
            continue
        if answer:
            turns.append(tuple(answer))
            answer = []
        if (converted := _client_item(item, where)) is not None:
            turns.append((converted,))
    if answer:
        turns.append(tuple(answer))
    return instructions, tuple(turns)


def _tool_choice(body: dict[str, Any]) -> ToolChoice | None:
    choice = body.get("tool_choice")
    parallel = body.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        raise invalid("parallel_tool_calls: expected a boolean")
    if choice is None:
        return None if parallel else ToolChoice("auto", None, False)
    if choice in ("auto", "none", "required"):
        return ToolChoice(choice, None, parallel)
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom") and \
            isinstance(choice.get("name"), str):
        return ToolChoice("required", choice["name"], parallel)
    raise invalid("tool_choice: expected auto, none, required or "
                  "{\"type\": \"function\", \"name\": ...}")


def estimate(conv: Conversation) -> int:
    """The prompt's tokens, estimated as the Anthropic front does (characters / 3.5)."""
    total = text_tokens(conv.instructions)
    for tool in conv.tools:
        total += TOOL_OVERHEAD + text_tokens(tool.name + tool.description +
                                             dumps(tool.parameters))
    for turn in conv.turns:
        for item in turn:
            total += MESSAGE_OVERHEAD
            if isinstance(item, Message):
                total += sum(IMAGE_TOKENS if isinstance(p, Image) else text_tokens(p.text)
                             for p in item.parts)
            elif isinstance(item, FunctionCall):
                total += TOOL_OVERHEAD + text_tokens(item.name + item.arguments)
            else:
                total += text_tokens(item.output) + IMAGE_TOKENS * len(item.images)
    return total


def request_kind(turn_metadata: str | None) -> str:
    """``turn`` or ``compaction``, from Codex's ``x-codex-turn-metadata`` header."""
    try:
        kind = json.loads(turn_metadata or "{}").get("request_kind")
    except (ValueError, AttributeError, RecursionError):  # the header is the client's
        return "turn"
    return kind if isinstance(kind, str) and kind else "turn"


def parse_request(body: Any, *, turn_metadata: str | None = None) -> ResponsesRequest:
    """Validate a ``POST /v1/responses`` body (a 400 naming the field otherwise)."""
    _expect(body, dict, "body", "a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid("model: required, a non-empty string")
    if "input" not in body:
        raise invalid("input: required, a string or an array of items")
    raw_input = body["input"]
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream: expected a boolean")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise invalid("instructions: expected a string")
    max_output = body.get("max_output_tokens")
    if max_output is not None and (isinstance(max_output, bool) or
                                   not isinstance(max_output, int) or max_output < 1):
        raise invalid("max_output_tokens: expected a positive integer")
    notes: dict[str, Any] = {}
    text = body.get("text")
    if text is not None:
        _expect(text, dict, "text", "an object")
        if text.get("format") not in (None, {"type": "text"}):
            notes["text_format_dropped"] = True
    cache_key = body.get("prompt_cache_key")
    tools, tool_map, dropped = convert_tools(body.get("tools"))
    if dropped:
        notes["tools_dropped"] = dropped
    if isinstance(raw_input, str):
        texts, turns = [], ((Message("user", (Text(raw_input),)),),)
    else:
        _expect(raw_input, list, "input", "a string or an array of items")
        texts, turns = _turns(raw_input, tool_map)
    if instructions:
        texts.insert(0, instructions)
    conv = Conversation(
        instructions="\n\n".join(texts), turns=turns, tools=tools,
        tool_choice=_tool_choice(body) if tools else None,
        max_output_tokens=max_output,
        temperature=_number(body, "temperature", 0, 2), top_p=_number(body, "top_p", 0, 1))
    unknown = sorted(k for k in body if k not in KNOWN_FIELDS)
    if unknown:
        notes["fields_ignored"] = unknown
    return ResponsesRequest(conv, model, bool(stream), tool_map,
                            cache_key if isinstance(cache_key, str) else None,
                            request_kind(turn_metadata), estimate(conv), notes)
