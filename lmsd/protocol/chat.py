"""The Chat Completions dialect: Anthropic request -> ``POST /v1/chat/completions``
(its stream is read by ``chat/decode.py``).

For servers without ``/v1/responses`` (Ollama, llama.cpp's servers, vLLM, LM Studio's
chat endpoint). They are stateless, so every turn carries the whole history. The
rendering is prefix-stable, as for Responses: the same message always becomes the same
chat messages, so the engine's prefix cache hits turn after turn.
"""

from __future__ import annotations

import json
from typing import Any

from .request import MessagesRequest
from .translate import (
    DEFAULT_OPTIONS,
    SYSTEM_MESSAGE_CLOSE,
    SYSTEM_MESSAGE_OPEN,
    TranslateOptions,
    _document_text,
    _search_result_text,
    _tool_output,
    data_url,
    function_tools,
    system_text,
)

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _image_part(source: dict[str, Any]) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": data_url(source)}}


def _user_content(texts: list[str], images: list[dict[str, Any]]) -> str | list[Any]:
    if not images:
        return "\n\n".join(texts)
    return [*({"type": "text", "text": t} for t in texts), *images]


def chat_messages(message: dict[str, Any]) -> list[dict[str, Any]]:
    """One Anthropic message as chat messages (deterministic, so prefix-stable)."""
    role, content = message["role"], message["content"]
    if role == "system":
        text = content if isinstance(content, str) else "\n\n".join(
            b["text"] for b in content if b["type"] == "text")
        return [{"role": "user", "content": SYSTEM_MESSAGE_OPEN + text + SYSTEM_MESSAGE_CLOSE}
                ] if text else []
    if isinstance(content, str):
        return [{"role": role, "content": content}] if content else []
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    tools: list[dict[str, Any]] = []
    tool_images: list[dict[str, Any]] = []
    for block in content:
        kind = block["type"]
        if kind == "text" and block["text"]:
            texts.append(block["text"])
        elif kind == "image":
            images.append(_image_part(block["source"]))
        elif kind == "document":
            texts.append(_document_text(block))
        elif kind == "search_result":
            texts.append(_search_result_text(block))
        elif kind == "tool_use":
            calls.append({"id": block["id"], "type": "function", "function": {
                "name": block["name"], "arguments": _dumps(block["input"])}})
        elif kind == "tool_result":
            output, attached = _tool_output(block)
            tools.append({"role": "tool", "tool_call_id": block["tool_use_id"],
                          "content": output})
            tool_images += [_image_part_from_url(p) for p in attached]
        # thinking / redacted_thinking: not sent (see translate.message_items)
    if role == "assistant":
        # "" rather than null: llama-cpp-python rejects a null content beside tool_calls
        out: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts)}
        if calls:
            out["tool_calls"] = calls
        return [out] if texts or calls else []
    out_messages = list(tools)  # tool results answer the call right before them
    if tool_images:
        out_messages.append({"role": "user", "content": tool_images})
    if texts or images:
        out_messages.append({"role": "user", "content": _user_content(texts, images)})
    return out_messages


def _image_part_from_url(part: dict[str, Any]) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": part["image_url"]}}


def merge_user_turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fold a text user message into the text user message right before it (strict
    templates want user/assistant alternation; Claude Code follows a user turn with a
    ``role: "system"`` message)."""
    merged: list[dict[str, Any]] = []
    for m in messages:
        prev = merged[-1] if merged else None
        if prev is not None and m["role"] == "user" == prev["role"] and isinstance(
                m["content"], str) and isinstance(prev["content"], str):
            merged[-1] = {"role": "user", "content": prev["content"] + "\n\n" + m["content"]}
        else:
            merged.append(m)
    return merged


def _tool_choice(choice: dict[str, Any] | None) -> tuple[Any, bool]:
    if not choice:
        return None, True
    parallel = not choice.get("disable_parallel_tool_use", False)
    kind = choice["type"]
    if kind == "tool":
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    return {"auto": "auto", "any": "required", "none": "none"}[kind], parallel


def build_chat_request(req: MessagesRequest, *, model: str,
                       options: TranslateOptions = DEFAULT_OPTIONS) -> dict[str, Any]:
    """The JSON body for ``POST /v1/chat/completions`` (always streamed, with usage)."""
    messages: list[dict[str, Any]] = []
    instructions = system_text(req.system, strip_billing=options.strip_billing_header)
    if instructions:
        messages.append({"role": "system", "content": instructions})
    for message in req.messages:
        messages.extend(chat_messages(message))
    body: dict[str, Any] = {"model": model, "messages": merge_user_turns(messages)}
    tools = [{"type": "function", "function": {k: v for k, v in t.items() if k != "type"}}
             for t in function_tools(req.tools, options.allowed_tools)]
    if tools:
        body["tools"] = tools
        choice, parallel = _tool_choice(req.tool_choice)
        if choice is not None:
            body["tool_choice"] = choice
        if not parallel:
            body["parallel_tool_calls"] = False
    if req.max_tokens is not None:
        body["max_tokens"] = req.max_tokens
    for key in ("temperature", "top_p", "top_k"):
        if getattr(req, key) is not None:
            body[key] = getattr(req, key)
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    return body
