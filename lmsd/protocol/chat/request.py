"""Pivot conversation -> ``POST /v1/chat/completions`` body.

For servers without ``/v1/responses`` (Ollama, llama.cpp's servers, vLLM, LM Studio's
chat endpoint). They are stateless, so every turn carries the whole history. The
rendering is prefix-stable: the same turn always becomes the same chat messages, so the
engine's prefix cache hits turn after turn.
"""

from __future__ import annotations

from typing import Any

from ..pivot import Conversation, FunctionCall, FunctionCallOutput, Image, Message, Turn


def _image(image: Image) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": image.url}}


def turn_messages(turn: Turn) -> list[dict[str, Any]]:
    """One turn as chat messages: an assistant turn as one message (its texts joined, its
    calls as ``tool_calls``); a user turn as its tool results, then the tools' images,
    then the user's text and images."""
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    tool_images: list[dict[str, Any]] = []
    assistant = False
    for item in turn:
        if isinstance(item, Message):
            assistant = item.role == "assistant"
            for part in item.parts:
                if isinstance(part, Image):
                    images.append(_image(part))
                else:
                    texts.append(part.text)
        elif isinstance(item, FunctionCall):
            assistant = True
            calls.append({"id": item.call_id, "type": "function", "function": {
                "name": item.name, "arguments": item.arguments}})
        elif isinstance(item, FunctionCallOutput):
            results.append({"role": "tool", "tool_call_id": item.call_id,
                            "content": item.output})
            tool_images += [_image(i) for i in item.images]
    if assistant:
        # "" rather than null: llama-cpp-python rejects a null content beside tool_calls
        out: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts)}
        if calls:
            out["tool_calls"] = calls
        return [out] if texts or calls else []
    messages = results  # tool results answer the call right before them
    if tool_images:
        messages.append({"role": "user", "content": tool_images})
    if texts or images:
        content: str | list[Any] = "\n\n".join(texts) if not images else [
            *({"type": "text", "text": t} for t in texts), *images]
        messages.append({"role": "user", "content": content})
    return messages


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


def _tool_choice(conv: Conversation, *, named_as_required: bool) -> Any:
    choice = conv.tool_choice
    if choice is None:
        return None
    if choice.name is not None and not named_as_required:
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


def build_chat_request(conv: Conversation, *, model: str, named_as_required: bool = False
                       ) -> dict[str, Any]:
    """The JSON body for ``POST /v1/chat/completions`` (always streamed, with usage).

    A ``tool_choice`` naming one tool is OpenAI's object, which most servers (and
    llama-cpp-python, for which it is the only way to force a call) read. llama-server
    reads ``tool_choice`` only as a string and takes the object for ``auto``: for it
    (``named_as_required``) a named choice is ``"required"`` with only that tool.
    """
    messages: list[dict[str, Any]] = []
    if conv.instructions:
        messages.append({"role": "system", "content": conv.instructions})
    for turn in conv.turns:
        messages.extend(turn_messages(turn))
    body: dict[str, Any] = {"model": model, "messages": merge_user_turns(messages)}
    tools = []
    named = conv.tool_choice.name if conv.tool_choice is not None else None
    for tool in conv.tools:
        if named_as_required and named is not None and tool.name != named:
            continue
        function: dict[str, Any] = {"name": tool.name}
        if tool.description:
            function["description"] = tool.description
        function["parameters"] = tool.parameters
        tools.append({"type": "function", "function": function})
    if tools:
        body["tools"] = tools
        choice = _tool_choice(conv, named_as_required=named_as_required)
        if choice is not None:
            body["tool_choice"] = choice
        if conv.tool_choice is not None and not conv.tool_choice.parallel:
            body["parallel_tool_calls"] = False
    if conv.max_output_tokens is not None:
        body["max_tokens"] = conv.max_output_tokens
    for key in ("temperature", "top_p", "top_k"):
        if getattr(conv, key) is not None:
            body[key] = getattr(conv, key)
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    return body
