"""Validation of ``POST /v1/chat/completions`` requests (the client face of the chat codec).

Every field lmsd uses is checked, and a bad value gets an OpenAI-shaped 400 naming the
field (``messages.2.content.1.image_url.url``). What lmsd cannot honour is refused rather
than silently dropped: ``n`` > 1, ``logprobs``, audio, structured output (the pivot has
no ``text.format``), remote image URLs, legacy ``functions``. Fields that change nothing
for a local model (``seed``, penalties, ``metadata``, ``store``...) are accepted and not
forwarded.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

from ..failures import invalid
from ..fields import expect, number, stop_strings
from ..pivot import Conversation
from .items import conversation

ROLES = ("system", "developer", "user", "assistant", "tool")
IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/gif")
MAX_MODEL_NAME = 256
MAX_STOP = 4
TOOL_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+);base64,(.*)$", re.DOTALL)
#: Fields refused with the reason; a value that asks for nothing (false, 1, "text") passes.
UNSUPPORTED = {
    "functions": "the legacy 'functions' field is not supported; send 'tools'",
    "function_call": "the legacy 'function_call' field is not supported; send 'tool_choice'",
    "audio": "audio output is not supported by lmsd",
    "web_search_options": "web search is not supported by lmsd (no local implementation)",
}


@dataclass(slots=True)
class ChatRequest:
    """A validated request: the pivot conversation and what the front needs besides."""

    model: str
    conversation: Conversation
    messages: int
    stream: bool = False
    include_usage: bool = False
    stop: tuple[str, ...] = ()
    session_hints: list[str] = field(default_factory=list)  # prompt_cache_key, user




def _string(obj: dict[str, Any], key: str, where: str) -> str:
    if obj.get(key) is None:
        raise invalid(f"{where}.{key}: field required" if where else f"{key}: field required")
    return expect(obj[key], str, f"{where}.{key}" if where else key, "a string")



def _positive_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    expect(value, int, key, "an integer")
    if value < 1:
        raise invalid(f"{key}: must be at least 1, got {value}")
    return int(value)


def validate_chat_request(body: Any) -> ChatRequest:
    """Check a decoded request body; raise BadRequest naming the first problem."""
    expect(body, dict, "request body", "a JSON object")
    model = _string(body, "model", "")
    if not model.strip():
        raise invalid("model: must not be empty")
    if len(model) > MAX_MODEL_NAME or not model.isprintable():
        raise invalid(f"model: must be at most {MAX_MODEL_NAME} printable characters")
    _refuse_unsupported(body)
    messages = _messages(body.get("messages"))
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"), tools)
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        expect(parallel, bool, "parallel_tool_calls", "a boolean")
    max_tokens = _positive_int(body, "max_completion_tokens")
    legacy = _positive_int(body, "max_tokens")
    max_tokens = max_tokens if max_tokens is not None else legacy
    top_k = body.get("top_k")
    if top_k is not None:
        expect(top_k, int, "top_k", "an integer")
    for key in ("frequency_penalty", "presence_penalty"):
        number(body, key, -2.0, 2.0)
    conv = conversation(
        messages, tools=tools, choice=choice, parallel=parallel is not False,
        max_output_tokens=max_tokens, temperature=number(body, "temperature", 0.0, 2.0),
        top_p=number(body, "top_p", 0.0, 1.0), top_k=top_k)
    stream = body.get("stream")
    if stream is not None:
        expect(stream, bool, "stream", "a boolean")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        expect(options, dict, "stream_options", "an object")
        if options.get("include_usage") is not None:
            include_usage = expect(options["include_usage"], bool,
                                    "stream_options.include_usage", "a boolean")
    hints = []
    for key in ("prompt_cache_key", "user"):
        if body.get(key) is not None:
            hints.append(expect(body[key], str, key, "a string"))
    return ChatRequest(model, conv, len(messages), bool(stream), include_usage,
                       _stop(body.get("stop")), [h for h in hints if h])


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for key, why in UNSUPPORTED.items():
        if body.get(key) is not None:
            raise invalid(f"{key}: {why}")
    n = body.get("n")
    if n is not None and expect(n, int, "n", "an integer") != 1:
        raise invalid(f"n: only one choice per request is supported (n=1), got {n}")
    if body.get("logprobs") is not None and expect(body["logprobs"], bool, "logprobs",
                                                    "a boolean"):
        raise invalid("logprobs: log probabilities are not supported by lmsd")
    if body.get("top_logprobs") is not None:
        raise invalid("top_logprobs: log probabilities are not supported by lmsd")
    modalities = body.get("modalities")
    if modalities is not None:
        expect(modalities, list, "modalities", "an array")
        if any(m != "text" for m in modalities):
            raise invalid(f"modalities: only 'text' output is supported, got {modalities!r}")
    fmt = body.get("response_format")
    if fmt is not None:
        expect(fmt, dict, "response_format", "an object")
        if fmt.get("type") != "text":
            raise invalid(f"response_format.type: {fmt.get('type')!r} is not supported: lmsd "
                          f"forwards no output format (structured output), only 'text'")


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    expect(value, list, "stop", "a string or an array of strings")
    return tuple(stop_strings(value, "stop", MAX_STOP))


def _messages(messages: Any) -> list[dict[str, Any]]:
    if messages is None:
        raise invalid("messages: field required")
    expect(messages, list, "messages", "an array")
    if not messages:
        raise invalid("messages: at least one message is required")
    pending: dict[str, int] = {}  # tool calls not answered yet -> the message that made them
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        expect(message, dict, where, "an object")
        role = message.get("role")
        if role not in ROLES:
            raise invalid(f"{where}.role: must be one of {', '.join(ROLES)}; got {role!r}")
        if role != "tool" and pending:
            call, at = next(iter(pending.items()))
            raise invalid(f"messages.{at}.tool_calls: tool call {call!r} has no tool message "
                          f"answering it")
        if role == "assistant":
            _assistant(message, where, pending, i)
        elif role == "tool":
            call = _string(message, "tool_call_id", where)
            if pending.pop(call, None) is None:
                raise invalid(f"{where}.tool_call_id: {call!r} does not answer a tool call "
                              f"of the assistant message before it")
            _text_content(message, where, required=True)
        elif role == "user":
            _user_content(message, where)
        else:
            _text_content(message, where, required=True)
    if pending:
        call, at = next(iter(pending.items()))
        raise invalid(f"messages.{at}.tool_calls: tool call {call!r} has no tool message "
                      f"answering it")
    return messages


def _text_content(message: dict[str, Any], where: str, *, required: bool) -> None:
    if "content" not in message or message["content"] is None:
        if required:
            raise invalid(f"{where}.content: field required")
        return
    content = message["content"]
    if isinstance(content, str):
        return
    expect(content, list, f"{where}.content", "a string or an array of text parts")
    for j, part in enumerate(content):
        at = f"{where}.content.{j}"
        expect(part, dict, at, "a content part object")
        kind = part.get("type")
        if kind == "refusal" and message["role"] == "assistant":
            _string(part, "refusal", at)
        elif kind == "text":
            _string(part, "text", at)
        else:
            raise invalid(f"{at}.type: only text parts are supported in a "
                          f"{message['role']} message, got {kind!r}")


def _user_content(message: dict[str, Any], where: str) -> None:
    content = message.get("content")
    if content is None:
        raise invalid(f"{where}.content: field required")
    if isinstance(content, str):
        return
    expect(content, list, f"{where}.content", "a string or an array of content parts")
    for j, part in enumerate(content):
        at = f"{where}.content.{j}"
        expect(part, dict, at, "a content part object")
        kind = part.get("type")
        if kind == "text":
            _string(part, "text", at)
        elif kind == "image_url":
            _image(part, at)
        else:
            raise invalid(f"{at}.type: content part type {kind!r} is not supported by lmsd "
                          f"(it can send text and image_url parts)")


def _image(part: dict[str, Any], where: str) -> None:
    image = expect(part.get("image_url"), dict, f"{where}.image_url", "an object")
    url = _string(image, "url", f"{where}.image_url")
    found = DATA_URL.match(url)
    if found is None:
        raise invalid(f"{where}.image_url.url: only base64 data URLs "
                      f"(data:image/png;base64,...) are supported; LM Studio cannot fetch "
                      f"remote images")
    media_type, data = found.groups()
    if media_type not in IMAGE_MEDIA_TYPES:
        raise invalid(f"{where}.image_url.url: {media_type!r} is not one of "
                      f"{', '.join(IMAGE_MEDIA_TYPES)}")
    if not data:
        raise invalid(f"{where}.image_url.url: image data is empty")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{where}.image_url.url: not valid base64") from None


def _assistant(message: dict[str, Any], where: str, pending: dict[str, int], i: int) -> None:
    calls = message.get("tool_calls")
    _text_content(message, where, required=False)
    if message.get("function_call") is not None:
        raise invalid(f"{where}.function_call: the legacy 'function_call' is not supported; "
                      f"send 'tool_calls'")
    if calls is None:
        return
    expect(calls, list, f"{where}.tool_calls", "an array")
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls.{j}"
        expect(call, dict, at, "an object")
        call_id = _string(call, "id", at)
        if not call_id:
            raise invalid(f"{at}.id: must not be empty")
        if call.get("type", "function") != "function":
            raise invalid(f"{at}.type: only 'function' tool calls are supported, got "
                          f"{call.get('type')!r}")
        function = expect(call.get("function"), dict, f"{at}.function", "an object")
        _string(function, "name", f"{at}.function")
        if function.get("arguments") is not None:
            expect(function["arguments"], str, f"{at}.function.arguments", "a string")
        if call_id in pending:
            raise invalid(f"{at}.id: duplicate tool call id {call_id!r}")
        pending[call_id] = i


def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    expect(tools, list, "tools", "an array")
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        where = f"tools.{i}"
        expect(tool, dict, where, "an object")
        if tool.get("type") != "function":
            raise invalid(f"{where}.type: only 'function' tools are supported, got "
                          f"{tool.get('type')!r}")
        function = expect(tool.get("function"), dict, f"{where}.function", "an object")
        name = _string(function, "name", f"{where}.function")
        if not TOOL_NAME.match(name):
            raise invalid(f"{where}.function.name: use 1-128 letters, digits, '_', '-', '.' "
                          f"or ':', got {name[:80]!r}")
        if name in seen:
            raise invalid(f"{where}.function.name: duplicate tool name {name!r}")
        seen.add(name)
        if function.get("description") is not None:
            expect(function["description"], str, f"{where}.function.description", "a string")
        if function.get("parameters") is not None:
            expect(function["parameters"], dict, f"{where}.function.parameters", "an object")
    return tools


def _tool_choice(choice: Any, tools: list[dict[str, Any]]) -> Any:
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise invalid(f"tool_choice: must be none, auto, required or a function; got "
                          f"{choice!r}")
        if choice == "required" and not tools:
            raise invalid("tool_choice: 'required' needs at least one tool in tools")
        return choice
    expect(choice, dict, "tool_choice", "a string or an object")
    if choice.get("type") != "function":
        raise invalid(f"tool_choice.type: must be 'function', got {choice.get('type')!r}")
    function = expect(choice.get("function"), dict, "tool_choice.function", "an object")
    name = _string(function, "name", "tool_choice.function")
    if name not in {t["function"]["name"] for t in tools}:
        raise invalid(f"tool_choice.function.name: no tool named {name!r} in tools")
    return choice
