"""Validation of Anthropic Messages requests.

Claude Code sends many fields that evolve with its betas (``context_management``,
``output_config``, ``safeguards`` ...). Unknown top-level fields are accepted and not
forwarded; everything lmsd does use is checked, and a bad value gets a 400 naming the
field, e.g. ``messages.3.content.1.source.media_type``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..failures import invalid
from ..fields import expect, number, stop_strings
from ..jsoncheck import MAX_DEPTH, problem

IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/gif")
REFUSED_MEDIA_TYPES = {"image/webp": "LM Studio's API does not accept WebP images"}
ROLES = ("user", "assistant", "system")
MAX_STOP_SEQUENCES = 16
MAX_MODEL_NAME = 256


@dataclass(slots=True)
class MessagesRequest:
    """A validated request. Messages and tools stay the client's own dicts."""

    model: str
    messages: list[dict[str, Any]]
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    server_tools: list[str] = field(default_factory=list)
    max_tokens: int | None = None
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] = field(default_factory=list)
    tool_choice: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise invalid(f"request body: the number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise invalid(f"request body: {name} is not a JSON number")


def parse_json(raw: bytes) -> Any:
    """Decode a request body; 400 for anything that is not strict JSON (NaN, Infinity and
    out-of-range numbers included: the upstream could not be sent them), for nesting
    deeper than ``MAX_DEPTH`` and for a lone surrogate anywhere in it (``jsoncheck``)."""
    try:
        value = json.loads(raw, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise invalid(f"request body is nested too deeply (more than {MAX_DEPTH} "
                      f"levels)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"request body is not valid JSON: {exc}") from None
    if (refused := problem(raw, value)) is not None:
        raise invalid(refused)
    return value





def _string(obj: dict[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    if key not in obj or obj[key] is None:
        if required:
            raise invalid(f"{where}.{key}: field required")
        return None
    return expect(obj[key], str, f"{where}.{key}", "a string")



def validate_messages_request(body: Any, *, count_only: bool = False) -> MessagesRequest:
    """Check a decoded request body; raise BadRequest naming the first problem."""
    expect(body, dict, "request body", "a JSON object")
    model = _string(body, "model", "request")
    if not model or not model.strip():
        raise invalid("model: must not be empty")
    if len(model) > MAX_MODEL_NAME or not model.isprintable():
        raise invalid(f"model: must be at most {MAX_MODEL_NAME} printable characters")
    req = MessagesRequest(model=model, messages=_messages(body.get("messages")))
    if "system" in body and body["system"] is not None:
        req.system = _system(body["system"])
    req.tools, req.server_tools = _tools(body.get("tools"))
    if not count_only:
        if "max_tokens" not in body:
            raise invalid("max_tokens: field required")
        req.max_tokens = expect(body["max_tokens"], int, "max_tokens", "an integer")
        if req.max_tokens < 1:
            raise invalid(f"max_tokens: must be at least 1, got {req.max_tokens}")
    stream = body.get("stream", False)
    req.stream = bool(expect(stream, bool, "stream", "a boolean")) if stream is not None else False
    req.temperature = number(body, "temperature", 0.0, 2.0)
    req.top_p = number(body, "top_p", 0.0, 1.0)
    if body.get("top_k") is not None:
        req.top_k = expect(body["top_k"], int, "top_k", "an integer")
    req.stop_sequences = _stop_sequences(body.get("stop_sequences"))
    req.tool_choice = _tool_choice(body.get("tool_choice"), req.tools)
    if body.get("metadata") is not None:
        req.metadata = expect(body["metadata"], dict, "metadata", "an object")
    if body.get("thinking") is not None:
        req.thinking = expect(body["thinking"], dict, "thinking", "an object")
    return req


def _system(system: Any) -> str | list[dict[str, Any]]:
    if isinstance(system, str):
        return system
    expect(system, list, "system", "a string or an array of text blocks")
    for i, block in enumerate(system):
        where = f"system.{i}"
        expect(block, dict, where, "a text block")
        if block.get("type") != "text":
            raise invalid(f"{where}.type: system blocks must be 'text', got {block.get('type')!r}")
        _string(block, "text", where)
    return system


def _messages(messages: Any) -> list[dict[str, Any]]:
    if messages is None:
        raise invalid("messages: field required")
    expect(messages, list, "messages", "an array")
    if not messages:
        raise invalid("messages: at least one message is required")
    first_turn = None
    pending_tool_uses: dict[str, int] = {}
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        expect(message, dict, where, "an object")
        role = message.get("role")
        if role not in ROLES:
            raise invalid(f"{where}.role: must be one of user, assistant, system; got {role!r}")
        if "content" not in message:
            raise invalid(f"{where}.content: field required")
        content = message["content"]
        if not isinstance(content, str):
            expect(content, list, f"{where}.content", "a string or an array of blocks")
            for j, block in enumerate(content):
                _block(block, role, f"{where}.content.{j}")
        if role == "system":
            continue
        if first_turn is None:
            first_turn = role
            if role != "user":
                raise invalid(f"{where}.role: the first non-system message must be 'user'")
        if role == "user":
            _pair_results(content, pending_tool_uses, where)
        else:
            if pending_tool_uses:
                missing = next(iter(pending_tool_uses))
                raise invalid(
                    f"messages.{pending_tool_uses[missing]}: tool_use {missing!r} has no "
                    f"tool_result in the next user message"
                )
            if not isinstance(content, str):
                for block in content:
                    if block.get("type") == "tool_use":
                        pending_tool_uses[block["id"]] = i
    if pending_tool_uses:
        missing = next(iter(pending_tool_uses))
        raise invalid(
            f"messages.{pending_tool_uses[missing]}: tool_use {missing!r} has no tool_result "
            f"after it"
        )
    return messages


def _pair_results(content: Any, pending: dict[str, int], where: str) -> None:
    """Each tool_result must answer a tool_use of the assistant message just before it."""
    blocks = [] if isinstance(content, str) else content
    for j, block in enumerate(blocks):
        if block.get("type") == "tool_result":
            tool_use_id = block["tool_use_id"]
            if pending.pop(tool_use_id, None) is None:
                raise invalid(
                    f"{where}.content.{j}.tool_use_id: {tool_use_id!r} does not answer a "
                    f"tool_use in the previous assistant message"
                )
    if pending:
        missing = next(iter(pending))
        raise invalid(
            f"messages.{pending[missing]}: tool_use {missing!r} has no tool_result in the "
            f"next user message"
        )


def _block(block: Any, role: str, where: str) -> None:
    expect(block, dict, where, "a content block object")
    kind = block.get("type")
    if not isinstance(kind, str):
        raise invalid(f"{where}.type: field required")
    if kind == "text":
        _string(block, "text", where)
    elif kind == "image":
        _image(block, where)
    elif kind == "tool_use":
        if role != "assistant":
            raise invalid(f"{where}: tool_use blocks belong in assistant messages")
        _string(block, "id", where)
        _string(block, "name", where)
        expect(block.get("input"), dict, f"{where}.input", "an object")
    elif kind == "tool_result":
        if role != "user":
            raise invalid(f"{where}: tool_result blocks belong in user messages")
        _string(block, "tool_use_id", where)
        _tool_result_content(block.get("content"), f"{where}.content")
        if block.get("is_error") is not None:
            expect(block["is_error"], bool, f"{where}.is_error", "a boolean")
    elif kind == "thinking":
        _string(block, "thinking", where)
    elif kind == "redacted_thinking":
        _string(block, "data", where)
    elif kind == "document":
        _document(block, where)
    elif kind == "search_result":
        _string(block, "title", where, required=False)
        expect(block.get("content"), list, f"{where}.content", "an array of text blocks")
        for k, part in enumerate(block["content"]):
            expect(part, dict, f"{where}.content.{k}", "a text block")
            if part.get("type") != "text":
                raise invalid(f"{where}.content.{k}.type: expected 'text'")
            _string(part, "text", f"{where}.content.{k}")
    else:
        raise invalid(
            f"{where}.type: content block type {kind!r} is not supported by lmsd "
            f"(it can convert text, image, tool_use, tool_result, thinking, document "
            f"and search_result blocks)"
        )


def _tool_result_content(content: Any, where: str) -> None:
    if content is None or isinstance(content, str):
        return
    expect(content, list, where, "a string or an array of blocks")
    for k, part in enumerate(content):
        expect(part, dict, f"{where}.{k}", "a content block object")
        kind = part.get("type")
        if kind == "text":
            _string(part, "text", f"{where}.{k}")
        elif kind == "image":
            _image(part, f"{where}.{k}")
        elif kind in ("document", "search_result"):
            _block(part, "user", f"{where}.{k}")
        elif kind == "tool_reference":  # Claude Code's ToolSearch: a deferred tool found
            _string(part, "tool_name", f"{where}.{k}")
        else:
            raise invalid(f"{where}.{k}.type: {kind!r} is not supported inside a tool_result")


def _image(block: dict[str, Any], where: str) -> None:
    source = expect(block.get("source"), dict, f"{where}.source", "an object")
    kind = source.get("type")
    if kind in ("url", "file"):
        raise invalid(
            f"{where}.source.type: {kind!r} images are not supported; LM Studio accepts "
            f"only base64 image data"
        )
    if kind != "base64":
        raise invalid(f"{where}.source.type: expected 'base64', got {kind!r}")
    media_type = _string(source, "media_type", f"{where}.source")
    if media_type in REFUSED_MEDIA_TYPES:
        raise invalid(f"{where}.source.media_type: {REFUSED_MEDIA_TYPES[media_type]}")
    if media_type not in IMAGE_MEDIA_TYPES:
        raise invalid(
            f"{where}.source.media_type: {media_type!r} is not one of "
            f"{', '.join(IMAGE_MEDIA_TYPES)}"
        )
    data = _string(source, "data", f"{where}.source")
    if not data:
        raise invalid(f"{where}.source.data: image data is empty")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{where}.source.data: not valid base64") from None


def _document(block: dict[str, Any], where: str) -> None:
    source = expect(block.get("source"), dict, f"{where}.source", "an object")
    kind = source.get("type")
    if kind == "text":
        _string(source, "data", f"{where}.source")
    elif kind == "content":
        content = source.get("content")
        if isinstance(content, str):
            return
        expect(content, list, f"{where}.source.content", "a string or an array of blocks")
        for k, part in enumerate(content):
            expect(part, dict, f"{where}.source.content.{k}", "a content block object")
            if part.get("type") != "text":
                raise invalid(
                    f"{where}.source.content.{k}.type: only text parts of a document can "
                    f"be sent to LM Studio, got {part.get('type')!r}"
                )
            _string(part, "text", f"{where}.source.content.{k}")
    else:
        raise invalid(
            f"{where}.source.type: {kind!r} documents (PDF, files, URLs) cannot be sent to "
            f"LM Studio; only plain-text documents can"
        )


def _tools(tools: Any) -> tuple[list[dict[str, Any]], list[str]]:
    if tools is None:
        return [], []
    expect(tools, list, "tools", "an array")
    functions: list[dict[str, Any]] = []
    server: list[str] = []
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        where = f"tools.{i}"
        expect(tool, dict, where, "an object")
        name = _string(tool, "name", where)
        kind = tool.get("type")
        if "input_schema" not in tool:
            if kind and kind != "custom":
                server.append(name)  # web_search_20250305 and friends: no local equivalent
                continue
            raise invalid(f"{where}.input_schema: field required")
        expect(tool["input_schema"], dict, f"{where}.input_schema", "an object")
        if name in seen:
            raise invalid(f"{where}.name: duplicate tool name {name!r}")
        seen.add(name)
        if tool.get("description") is not None:
            expect(tool["description"], str, f"{where}.description", "a string")
        functions.append(tool)
    return functions, server


def _tool_choice(choice: Any, tools: list[dict[str, Any]]) -> dict[str, Any] | None:
    if choice is None:
        return None
    expect(choice, dict, "tool_choice", "an object")
    kind = choice.get("type")
    if kind not in ("auto", "any", "tool", "none"):
        raise invalid(f"tool_choice.type: must be auto, any, tool or none; got {kind!r}")
    if kind == "tool":
        name = _string(choice, "name", "tool_choice")
        if name not in {t["name"] for t in tools}:
            raise invalid(f"tool_choice.name: no tool named {name!r} in tools")
    return choice


def _stop_sequences(value: Any) -> list[str]:
    if value is None:
        return []
    expect(value, list, "stop_sequences", "an array of strings")
    return stop_strings(value, "stop_sequences", MAX_STOP_SEQUENCES)


__all__ = ["MessagesRequest", "parse_json", "validate_messages_request"]
