"""Pivot conversation -> an Anthropic ``POST /v1/messages`` body for an engine that speaks
Messages itself (llama-server, vLLM, SGLang, Ollama, LM Studio >= 0.4.1).

Such engines are stateless: every turn carries the whole history. The rendering is
prefix-stable (the same turn always becomes the same messages, whatever follows it), so
the engine's prefix cache hits turn after turn. What the engine's own conversion to its
chat template needs:

- a user turn's tool results go in a message of their own, before its text: llama-server
  turns a user message into its text first and its ``tool_result`` blocks after, which
  would put the user's words between a call and its result;
- text-only user messages next to each other are folded into one (strict templates want
  user and assistant to alternate; Claude Code follows a user turn with a system note);
- a tool's images follow its results as image blocks, as every dialect sends them.

A tool choice that names one tool sends that tool alone, as the Responses dialect does for
LM Studio: llama-server reads ``{"type": "tool"}`` as any tool. Stop sequences are not
sent: lmsd applies them itself (``stops.py``), and an engine that stopped on one would
leave nothing for lmsd to see.
"""

from __future__ import annotations

import json
from typing import Any

from ..pivot import (
    Conversation,
    FunctionCall,
    FunctionCallOutput,
    Image,
    Message,
    Text,
    ToolChoice,
    Turn,
)

#: The ``anthropic-version`` header every Messages request carries.
ANTHROPIC_VERSION = "2023-06-01"
#: ``max_tokens`` is required by Messages; a client that set no output limit (chat and
#: Responses clients may not) gets llama-server's own default. Larger is unsafe: vLLM
#: refuses a request whose prompt plus ``max_tokens`` exceeds the context.
DEFAULT_MAX_TOKENS = 4096
#: The field arguments that are not a JSON object are wrapped in (Messages takes only an
#: object as a call's ``input``); the Anthropic front wraps them the same way.
INVALID_ARGUMENTS = "__lmsd_invalid_arguments"

Block = dict[str, Any]
MessageJSON = dict[str, Any]


def image_block(image: Image) -> Block:
    """A data URL (``data:image/png;base64,...``) as a base64 image block."""
    head, sep, data = image.url.partition(",")
    if not (sep and head.startswith("data:") and head.endswith(";base64")):
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    media_type = head[len("data:"):-len(";base64")]
    return {"type": "image", "source": {"type": "base64", "media_type": media_type,
                                        "data": data}}


def tool_input(arguments: str) -> dict[str, Any]:
    """A call's JSON arguments as the object ``tool_use.input`` must be."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {INVALID_ARGUMENTS: arguments}


def turn_messages(turn: Turn) -> list[MessageJSON]:
    """One turn as Messages messages: an assistant turn as one message (its texts and calls
    in order); a user turn as its tool results, then the tools' images, the user's text
    and images."""
    said: list[Block] = []  # the assistant's texts and calls
    results: list[Block] = []
    tool_images: list[Block] = []
    parts: list[Block] = []  # the user's texts and images
    assistant = False
    for item in turn:
        if isinstance(item, Message):
            assistant = item.role == "assistant"
            for part in item.parts:
                if isinstance(part, Text):
                    if part.text:
                        (said if assistant else parts).append(
                            {"type": "text", "text": part.text})
                elif not assistant:
                    parts.append(image_block(part))
        elif isinstance(item, FunctionCall):
            assistant = True
            said.append({"type": "tool_use", "id": item.call_id, "name": item.name,
                         "input": tool_input(item.arguments)})
        elif isinstance(item, FunctionCallOutput):
            results.append({"type": "tool_result", "tool_use_id": item.call_id,
                            "content": item.output})
            tool_images.extend(image_block(i) for i in item.images)
    if assistant:
        return [{"role": "assistant", "content": said}] if said else []
    out: list[MessageJSON] = []
    if results:
        out.append({"role": "user", "content": results})
    if tool_images or parts:
        out.append({"role": "user", "content": tool_images + parts})
    return out


def _has_results(message: MessageJSON) -> bool:
    return any(block["type"] == "tool_result" for block in message["content"])


def merge_user_messages(messages: list[MessageJSON]) -> list[MessageJSON]:
    """Fold a user message into the user message right before it, unless either holds
    tool results (those stay a message of their own, see the module docstring)."""
    merged: list[MessageJSON] = []
    for m in messages:
        prev = merged[-1] if merged else None
        if prev is not None and m["role"] == "user" == prev["role"] and not (
                _has_results(m) or _has_results(prev)):
            merged[-1] = {"role": "user", "content": prev["content"] + m["content"]}
        else:
            merged.append(m)
    return merged


def conversation_messages(conv: Conversation) -> list[MessageJSON]:
    return merge_user_messages([m for turn in conv.turns for m in turn_messages(turn)])


def _tool_choice(choice: ToolChoice) -> dict[str, Any]:
    if choice.name is not None:
        out: dict[str, Any] = {"type": "tool", "name": choice.name}
    else:
        out = {"type": {"auto": "auto", "required": "any", "none": "none"}[choice.mode]}
    if not choice.parallel and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


def _prompt(conv: Conversation, *, model: str) -> dict[str, Any]:
    """What a turn and its token count share: model, system, messages, tools."""
    body: dict[str, Any] = {"model": model}
    if conv.instructions:
        body["system"] = conv.instructions
    body["messages"] = conversation_messages(conv)
    choice = conv.tool_choice
    if conv.tools:
        tools = []
        for tool in conv.tools:
            if choice is not None and choice.name is not None and tool.name != choice.name:
                continue  # see the module docstring
            entry: dict[str, Any] = {"name": tool.name}
            if tool.description:
                entry["description"] = tool.description
            entry["input_schema"] = tool.parameters
            tools.append(entry)
        body["tools"] = tools
        if choice is not None:
            body["tool_choice"] = _tool_choice(choice)
    return body


def build_messages_request(conv: Conversation, *, model: str, user_id: str | None = None
                           ) -> dict[str, Any]:
    """The JSON body for ``POST /v1/messages`` (always streamed). ``user_id`` (the session
    key) goes in ``metadata.user_id``, where a cluster's router can read it."""
    body = _prompt(conv, model=model)
    body["max_tokens"] = conv.max_output_tokens or DEFAULT_MAX_TOKENS
    for key in ("temperature", "top_p", "top_k"):
        if getattr(conv, key) is not None:
            body[key] = getattr(conv, key)
    if user_id:
        body["metadata"] = {"user_id": user_id}
    body["stream"] = True
    return body


def build_count_request(conv: Conversation, *, model: str) -> dict[str, Any]:
    """The JSON body for ``POST /v1/messages/count_tokens``: the prompt only (sampling
    settings mean nothing to a count, and some servers refuse them there)."""
    return _prompt(conv, model=model)


def text_conversation(text: str) -> Conversation:
    """``text`` as the one user message of a conversation (what ``count_tokens`` counts
    when only a text is at hand)."""
    return Conversation("", ((Message("user", (Text(text),)),),))
