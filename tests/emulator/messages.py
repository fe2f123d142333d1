"""POST /v1/messages and /v1/messages/count_tokens: an engine's own Anthropic Messages API,
over the same scripting, policy, faults and overflow wordings.

Messages are turned into Responses-style context items (``system`` becomes the
instructions, ``tool_use`` a function_call, ``tool_result`` a function_call_output), so
scripted replies, the default policy, token counts and the prefix cache behave as they do
for /v1/responses. Requests are stateless; they take injected faults (as /v1/responses
does) when faults are queued.

``Emulator.messages_flavor`` picks which server it speaks like:

- ``llama_server`` (the default): llama-server's grammar (``messages_stream.py``), its error shape
  ``{"error": {"code", "message", "type"}}``, any model name accepted, ``count_tokens``;
- ``anthropic``: Anthropic's grammar (vLLM, SGLang), ``{"type": "error", "error": {...}}``,
  an unknown model is a 404, ``count_tokens``;
- ``ollama``: Anthropic's grammar and errors, no ``count_tokens`` (gin's 404 text);
- ``lmstudio``: Anthropic's grammar, no ``count_tokens`` (LM Studio answers 200 "Returning
  200 anyway" to any unknown route);
- ``none``: no /v1/messages at all (llama-cpp-python's server: FastAPI's 404).
"""

from __future__ import annotations

import json
from typing import Any

from quart import Response

from .overflow import overflow_error
from .state import (
    Emulator,
    Item,
    MessagesFlavor,
    Plan,
    RequestRecord,
    _check_call_ids,
    render_context,
    tokenize,
)
from .validate import ApiError

FLAVORS: tuple[MessagesFlavor, ...] = ("llama_server", "anthropic", "ollama", "lmstudio", "none")
ANTHROPIC_GRAMMAR = ("anthropic", "ollama", "lmstudio")
ROLES = ("user", "assistant")


def error_body(emu: Emulator, error: ApiError) -> dict[str, Any]:
    """An error as this flavor words it: llama-server's flat object in ``error`` (its
    overflow with ``n_prompt_tokens``/``n_ctx``), else Anthropic's shape."""
    payload = error.payload or {}
    if emu.messages_flavor == "llama_server":
        if "n_ctx" in payload.get("error", {}):
            return payload
        kind = "server_error" if error.status >= 500 else "invalid_request_error"
        return {"error": {"code": error.status, "message": error.message, "type": kind}}
    kind = "api_error" if error.status >= 500 else "invalid_request_error"
    if error.status == 404:
        kind = "not_found_error"
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def stream_error(emu: Emulator, error: ApiError) -> dict[str, Any]:
    """The data of an ``event: error`` mid-stream: llama-server sends its flat error
    object; the others an Anthropic error."""
    body = error_body(emu, error)
    return body["error"] if emu.messages_flavor == "llama_server" else body


def messages_error(emu: Emulator, error: ApiError) -> Response:
    return Response(json.dumps(error_body(emu, error)), status=error.status,
                    content_type="application/json")


def missing_route(emu: Emulator) -> Response | None:
    """The answer of a server without this route, or None when the flavor has it."""
    if emu.messages_flavor == "none":  # llama-cpp-python (FastAPI)
        return Response(json.dumps({"detail": "Not Found"}), status=404,
                        content_type="application/json")
    return None


def missing_count(emu: Emulator, path: str) -> Response | None:
    """``count_tokens`` where the flavor has none."""
    if emu.messages_flavor == "ollama":  # gin's default 404
        return Response("404 page not found", status=404, content_type="text/plain")
    if emu.messages_flavor == "lmstudio":
        message = f"Unexpected endpoint or method. (POST {path}). Returning 200 anyway"
        return Response(json.dumps({"error": message}), content_type="application/json")
    return missing_route(emu)


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if not isinstance(content, list):
        raise ApiError(f"{where}: Input should be a valid string or list")
    return "".join(str(b.get("text", "")) for b in content
                   if isinstance(b, dict) and b.get("type") == "text")


def _block_items(role: str, blocks: list[Any], where: str) -> list[Item]:
    items: list[Item] = []
    parts: list[dict[str, Any]] = []
    text_type = "output_text" if role == "assistant" else "input_text"

    def flush() -> None:
        if parts:
            items.append({"type": "message", "role": role, "content": list(parts)})
            parts.clear()

    for j, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        at = f"{where}.content.{j}"
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append({"type": text_type, "text": block["text"]})
        elif kind == "image" and role == "user" and isinstance(block.get("source"), dict):
            source = block["source"]
            url = (f"data:{source.get('media_type')};base64,{source.get('data')}"
                   if source.get("type") == "base64" else source.get("url"))
            parts.append({"type": "input_image", "image_url": url})
        elif kind == "thinking":
            flush()
            items.append({"type": "reasoning", "content": [
                {"type": "reasoning_text", "text": str(block.get("thinking", ""))}]})
        elif kind == "tool_use" and role == "assistant":
            if not isinstance(block.get("input"), dict) or not isinstance(block.get("id"), str):
                raise ApiError(f"{at}.input: Input should be a valid dictionary")
            flush()
            items.append({"type": "function_call", "call_id": block["id"],
                          "name": block.get("name"),
                          "arguments": json.dumps(block["input"], separators=(",", ":"))})
        elif kind == "tool_result" and role == "user":
            flush()
            items.append({"type": "function_call_output", "call_id": block.get("tool_use_id"),
                          "output": _text(block.get("content"), f"{at}.content")})
        else:
            raise ApiError(f"{at}: unsupported content block {kind!r} for role {role!r}")
    flush()
    return items


def messages_context(body: dict[str, Any]) -> tuple[str | None, list[Item], list[Any]]:
    """(instructions, context items, Responses-style tools) of a Messages body."""
    system = body.get("system")
    instructions = _text(system, "system") or None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError("messages: Field required" if messages is None else
                       "messages: List should have at least 1 item")
    items: list[Item] = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            raise ApiError(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if isinstance(content, str):
            kind = "output_text" if role == "assistant" else "input_text"
            items.append({"type": "message", "role": role,
                          "content": [{"type": kind, "text": content}]})
        elif isinstance(content, list):
            items += _block_items(role, content, f"messages.{i}")
        else:
            raise ApiError(f"messages.{i}.content: Field required")
    tools = []
    for i, tool in enumerate(body.get("tools") or ()):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise ApiError(f"tools.{i}.name: Field required")
        tools.append({"type": "function", "name": tool["name"],
                      "description": tool.get("description", ""),
                      "parameters": tool.get("input_schema") or {}})
    return instructions, items, tools


def _model(emu: Emulator, body: dict[str, Any]) -> Any:
    name = body.get("model")
    if not isinstance(name, str):
        raise ApiError("model: Field required")
    model = emu.models.get(name)
    if model is not None and model.loaded:
        return model
    loaded = [m for m in emu.models.values() if m.loaded]
    if emu.messages_flavor == "llama_server" and loaded:
        return loaded[0]  # llama-server serves its one model whatever the name
    raise ApiError(f"The model `{name}` does not exist.", status=404)


def plan_messages(emu: Emulator, record: RequestRecord, body: Any, *, count: bool = False
                  ) -> Plan:
    """Validate a Messages body and build its context; raise ApiError."""
    if not isinstance(body, dict):
        raise ApiError("Input should be a valid dictionary")
    if emu.messages_flavor == "llama_server" and "messages" not in body:
        # its conversion to chat throws before any check: an HTTP 500 (measured)
        raise ApiError("'messages' is required", status=500)
    model = _model(emu, body)
    max_tokens = body.get("max_tokens")
    if not count and emu.messages_flavor != "llama_server" and (
            not isinstance(max_tokens, int) or max_tokens < 1):
        raise ApiError("max_tokens: Field required")  # llama-server defaults it to 4096
    record.model = body["model"]
    record.stream = bool(body.get("stream"))
    instructions, items, tools = messages_context(body)
    record.new_items = record.context_items = items
    record.instructions_used = instructions
    record.tools = tools
    _check_call_ids(items)
    if not model.vision and any(
            isinstance(p, dict) and p.get("type") == "input_image"
            for item in items for p in (item.get("content") or [])
            if isinstance(item.get("content"), list)):
        raise ApiError("image input is not supported by this model")
    tokens = tokenize(render_context(items, instructions, tools))
    cached = emu.cached_prefix(model.key, tokens)
    record.input_tokens, record.cached_tokens = len(tokens), cached
    plan = Plan(record, body, model, tokens, cached)
    if not count and len(tokens) > model.context_length:
        status = 500 if emu.overflow_mode == "http500" else 400
        overflow = overflow_error(emu.overflow_wording, len(tokens), model.context_length,
                                  status, max_tokens if isinstance(max_tokens, int) else 0)
        if not emu.overflow_in_stream or not record.stream:
            raise overflow
        plan.overflow = overflow  # an `event: error` after message_start
    return plan
