"""Anthropic Messages request -> LM Studio ``POST /v1/responses`` request.

Each message translates on its own into a list of Responses input items
(:func:`message_items`), so that a chained request can send the items of only the new
messages. The rendering is deterministic and prefix-stable: the same message always
becomes byte-identical items, whatever follows it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .request import MessagesRequest

BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"
SYSTEM_MESSAGE_OPEN = "<system-reminder>\n"
SYSTEM_MESSAGE_CLOSE = "\n</system-reminder>"

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class TranslateOptions:
    strip_billing_header: bool = True
    allowed_tools: frozenset[str] | None = None


DEFAULT_OPTIONS = TranslateOptions()


def system_text(system: str | list[dict[str, Any]] | None, *, strip_billing: bool = True) -> str:
    """Join the system prompt into ``instructions``, dropping the volatile billing header.

    Claude Code's ``x-anthropic-billing-header`` block changes with the conversation,
    which invalidates LM Studio's prefix cache if it is sent.
    """
    if not system:
        return ""
    blocks = [system] if isinstance(system, str) else [b["text"] for b in system]
    if strip_billing:
        blocks = [b for b in blocks if not b.startswith(BILLING_HEADER_PREFIX)]
    return "\n\n".join(b for b in blocks if b)


def _text_part(role: str, text: str) -> dict[str, Any]:
    return {"type": "output_text" if role == "assistant" else "input_text", "text": text}


def _message(role: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": parts}


def data_url(source: dict[str, Any]) -> str:
    """A base64 image source as the data URL both upstream dialects take."""
    return f"data:{source['media_type']};base64,{source['data']}"


def _image_part(source: dict[str, Any]) -> dict[str, Any]:
    return {"type": "input_image", "image_url": data_url(source), "detail": "auto"}


def _document_text(block: dict[str, Any]) -> str:
    source = block["source"]
    if source["type"] == "text":
        body = source["data"]
    elif isinstance(source["content"], str):
        body = source["content"]
    else:
        body = "\n".join(p["text"] for p in source["content"])
    title = block.get("title")
    return f"<document title={json.dumps(title)}>\n{body}\n</document>" if title else body


def _search_result_text(block: dict[str, Any]) -> str:
    body = "\n".join(p["text"] for p in block["content"])
    return f"<search_result source={json.dumps(block.get('source', ''))} title=" \
        f"{json.dumps(block.get('title', ''))}>\n{body}\n</search_result>"


def _tool_output(block: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """A tool_result as LM Studio needs it: a string ``output`` (plus any images)."""
    content = block.get("content")
    images: list[dict[str, Any]] = []
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        pieces = []
        for part in content:
            kind = part["type"]
            if kind == "text":
                pieces.append(part["text"])
            elif kind == "image":
                images.append(_image_part(part["source"]))
                pieces.append(
                    f"[image {len(images)}: {part['source']['media_type']}, "
                    f"attached in the next message]"
                )
            elif kind == "document":
                pieces.append(_document_text(part))
            else:
                pieces.append(_search_result_text(part))
        text = "\n".join(pieces)
    if block.get("is_error"):
        text = f"[tool error] {text}" if text else "[tool error]"
    return text, images


def message_items(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Translate one Anthropic message into Responses input items.

    - text, documents and search results become ``input_text``/``output_text`` parts;
    - images go in messages of their own (LM Studio rejects text and image parts mixed
      in one message);
    - ``tool_use`` -> ``function_call`` with ``call_id`` = the tool_use id;
    - ``tool_result`` -> ``function_call_output`` with a string ``output``; its images
      follow in a user message;
    - ``thinking`` and ``redacted_thinking`` are not sent: LM Studio cannot verify them
      and most chat templates drop past reasoning anyway;
    - a ``role: "system"`` message becomes user text wrapped in ``<system-reminder>``, since
      most local chat templates reject a system turn after the first message.
    """
    role = message["role"]
    content = message["content"]
    if role == "system":
        text = content if isinstance(content, str) else "\n\n".join(
            b["text"] for b in content if b["type"] == "text"
        )
        if not text:
            return []
        return [_message("user", [_text_part("user", SYSTEM_MESSAGE_OPEN + text +
                                             SYSTEM_MESSAGE_CLOSE)])]
    if isinstance(content, str):
        return [_message(role, [_text_part(role, content)])] if content else []

    items: list[dict[str, Any]] = []
    texts: list[dict[str, Any]] = []
    tool_images: list[dict[str, Any]] = []

    def flush_text() -> None:
        if texts:
            items.append(_message(role, texts.copy()))
            texts.clear()

    for block in content:
        kind = block["type"]
        if kind == "text":
            if block["text"]:
                texts.append(_text_part(role, block["text"]))
        elif kind == "image":
            flush_text()
            items.append(_message(role, [_image_part(block["source"])]))
        elif kind == "document":
            texts.append(_text_part(role, _document_text(block)))
        elif kind == "search_result":
            texts.append(_text_part(role, _search_result_text(block)))
        elif kind == "tool_use":
            flush_text()
            items.append({
                "type": "function_call",
                "call_id": block["id"],
                "name": block["name"],
                "arguments": _dumps(block["input"]),
            })
        elif kind == "tool_result":
            flush_text()
            output, images = _tool_output(block)
            items.append({
                "type": "function_call_output",
                "call_id": block["tool_use_id"],
                "output": output,
            })
            tool_images.extend(images)
        # thinking / redacted_thinking: intentionally not sent (see docstring)
    flush_text()
    if tool_images:
        items.append(_message("user", tool_images))
    return items


def merge_adjacent_user_text(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fold a text-only user message into the user text message right before it.

    Claude Code puts a ``role: "system"`` message right after a user turn; folding keeps
    the user/assistant alternation that strict chat templates require.
    """
    merged: list[dict[str, Any]] = []
    for item in items:
        prev = merged[-1] if merged else None
        if (
            prev is not None
            and item.get("type") == "message" == prev.get("type")
            and item["role"] == "user" == prev["role"]
            and all(p["type"] == "input_text" for p in item["content"])
            and all(p["type"] == "input_text" for p in prev["content"])
        ):
            merged[-1] = _message("user", prev["content"] + item["content"])
        else:
            merged.append(item)
    return merged


def join_items(per_message: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The ``input`` of a request from its messages' items (see message_items)."""
    return merge_adjacent_user_text([item for items in per_message for item in items])


def input_items(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return join_items(message_items(m) for m in messages)


def function_tools(
    tools: list[dict[str, Any]], allowed: frozenset[str] | None = None
) -> list[dict[str, Any]]:
    """Anthropic tools -> flat Responses function tools, in the client's order."""
    out = []
    for tool in tools:
        if allowed is not None and tool["name"] not in allowed:
            continue
        fn: dict[str, Any] = {"type": "function", "name": tool["name"]}
        if tool.get("description"):
            fn["description"] = tool["description"]
        fn["parameters"] = tool["input_schema"]
        out.append(fn)
    return out


def _tool_choice(
    choice: dict[str, Any] | None, tools: list[dict[str, Any]]
) -> tuple[str | None, list[dict[str, Any]], bool]:
    """Map tool_choice to LM Studio's string form: (choice, tools, parallel_allowed).

    LM Studio accepts only ``none|auto|required``; forcing one named tool is done by
    sending only that tool with ``required``.
    """
    if not choice:
        return None, tools, True
    parallel = not choice.get("disable_parallel_tool_use", False)
    kind = choice["type"]
    if kind == "none":
        return "none", tools, parallel
    if kind == "any":
        return "required", tools, parallel
    if kind == "tool":
        return "required", [t for t in tools if t["name"] == choice["name"]], parallel
    return "auto", tools, parallel


def build_responses_request(
    req: MessagesRequest,
    *,
    model: str,
    items: list[dict[str, Any]],
    options: TranslateOptions = TranslateOptions(),
    previous_response_id: str | None = None,
) -> dict[str, Any]:
    """The JSON body for ``POST /v1/responses``.

    Tools and instructions are sent on every request: LM Studio does not restore tools
    from ``previous_response_id``, and resending identical instructions costs nothing
    once they are in the prefix cache.
    """
    body: dict[str, Any] = {"model": model, "input": items}
    instructions = system_text(req.system, strip_billing=options.strip_billing_header)
    if instructions:
        body["instructions"] = instructions
    if previous_response_id:
        body["previous_response_id"] = previous_response_id
    tools = function_tools(req.tools, options.allowed_tools)
    choice, tools, parallel = _tool_choice(req.tool_choice, tools)
    if tools:
        body["tools"] = tools
        if choice:
            body["tool_choice"] = choice
        if not parallel:
            body["parallel_tool_calls"] = False
    if req.max_tokens is not None:
        body["max_output_tokens"] = req.max_tokens
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    body["stream"] = True
    body["store"] = True
    return body
