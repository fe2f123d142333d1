"""Anthropic Messages request -> the pivot :class:`~..pivot.Conversation`.

Each message becomes one :data:`~..pivot.Turn` on its own, so a chained request can send
the turns of only the new messages, and the same message is always the same turn.
"""

from __future__ import annotations

import json
from typing import Any

from ..pivot import (
    Conversation,
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    Image,
    Item,
    Message,
    Part,
    Text,
    ToolChoice,
    Turn,
    dumps,
)
from .request import MessagesRequest

BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"
SYSTEM_MESSAGE_OPEN = "<system-reminder>\n"
SYSTEM_MESSAGE_CLOSE = "\n</system-reminder>"


def system_text(system: str | list[dict[str, Any]] | None, *, strip_billing: bool = True) -> str:
    """Join the system prompt into instructions, dropping the volatile billing header.

    Claude Code's ``x-anthropic-billing-header`` block changes with the conversation,
    which invalidates the engine's prefix cache if it is sent.
    """
    if not system:
        return ""
    blocks = [system] if isinstance(system, str) else [b["text"] for b in system]
    if strip_billing:
        blocks = [b for b in blocks if not b.startswith(BILLING_HEADER_PREFIX)]
    return "\n\n".join(b for b in blocks if b)


def data_url(source: dict[str, Any]) -> str:
    """A base64 image source as the data URL every upstream kind takes."""
    return f"data:{source['media_type']};base64,{source['data']}"


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


def _tool_output(block: dict[str, Any]) -> FunctionCallOutput:
    """A tool_result as upstreams take it: a string output, its images set apart."""
    content = block.get("content")
    images: list[Image] = []
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
                images.append(Image(data_url(part["source"])))
                pieces.append(
                    f"[image {len(images)}: {part['source']['media_type']}, "
                    f"attached in the next message]"
                )
            elif kind == "document":
                pieces.append(_document_text(part))
            elif kind == "tool_reference":
                # The API would load the deferred tool's definition; lmsd sends every tool
                # the client declares (``defer_loading`` ones too), so it is callable.
                pieces.append(f"[tool {part['tool_name']} loaded: call it like any other]")
            else:
                pieces.append(_search_result_text(part))
        text = "\n".join(pieces)
    if block.get("is_error"):
        text = f"[tool error] {text}" if text else "[tool error]"
    return FunctionCallOutput(block["tool_use_id"], text, tuple(images))


def message_turn(message: dict[str, Any]) -> Turn:
    """One Anthropic message as a turn.

    - text, documents and search results become text parts;
    - an image ends the text before it and stands in a message of its own;
    - ``tool_use`` -> FunctionCall with ``call_id`` = the tool_use id;
    - ``tool_result`` -> FunctionCallOutput with a string output (images set apart);
    - ``thinking`` and ``redacted_thinking`` are not sent: no engine can verify them and
      most chat templates drop past reasoning anyway;
    - a ``role: "system"`` message becomes user text wrapped in ``<system-reminder>``.
    """
    role = message["role"]
    content = message["content"]
    if role == "system":
        text = content if isinstance(content, str) else "\n\n".join(
            b["text"] for b in content if b["type"] == "text"
        )
        if not text:
            return ()
        return (Message("user", (Text(SYSTEM_MESSAGE_OPEN + text + SYSTEM_MESSAGE_CLOSE),)),)
    if isinstance(content, str):
        return (Message(role, (Text(content),)),) if content else ()

    items: list[Item] = []
    texts: list[Part] = []

    def flush_text() -> None:
        if texts:
            items.append(Message(role, tuple(texts)))
            texts.clear()

    for block in content:
        kind = block["type"]
        if kind == "text":
            if block["text"]:
                texts.append(Text(block["text"]))
        elif kind == "image":
            flush_text()
            items.append(Message(role, (Image(data_url(block["source"])),)))
        elif kind == "document":
            texts.append(Text(_document_text(block)))
        elif kind == "search_result":
            texts.append(Text(_search_result_text(block)))
        elif kind == "tool_use":
            flush_text()
            items.append(FunctionCall(block["id"], block["name"], dumps(block["input"])))
        elif kind == "tool_result":
            flush_text()
            items.append(_tool_output(block))
        # thinking / redacted_thinking: intentionally not sent (see docstring)
    flush_text()
    return tuple(items)


def _tool_choice(choice: dict[str, Any] | None) -> ToolChoice | None:
    if not choice:
        return None
    parallel = not choice.get("disable_parallel_tool_use", False)
    kind = choice["type"]
    if kind == "tool":
        return ToolChoice("required", choice["name"], parallel)
    return ToolChoice({"any": "required", "none": "none"}.get(kind, "auto"), None, parallel)


def conversation(req: MessagesRequest, *, strip_billing: bool = True,
                 allowed_tools: frozenset[str] | None = None) -> Conversation:
    """The pivot conversation for a validated request; ``allowed_tools`` (a session's
    configuration) drops the client's other tools."""
    tools = tuple(
        FunctionTool(t["name"], t.get("description") or "", t["input_schema"])
        for t in req.tools if allowed_tools is None or t["name"] in allowed_tools)
    return Conversation(
        instructions=system_text(req.system, strip_billing=strip_billing),
        turns=tuple(message_turn(m) for m in req.messages),
        tools=tools,
        tool_choice=_tool_choice(req.tool_choice),
        max_output_tokens=req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
    )
