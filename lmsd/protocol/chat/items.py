"""Chat Completions messages (the client face) -> the pivot :class:`~..pivot.Conversation`.

Each message becomes one :data:`~..pivot.Turn` by itself, whatever comes before or after
it, so the same history is always the same turns (prefix-stable): a chained request can
send the turns of only the new messages, and lmsd's own answer, echoed back by the client,
hashes the same as the turn ``reply.py`` stored for it.
"""

from __future__ import annotations

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
)

SYSTEM_MESSAGE_OPEN = "<system-reminder>\n"
SYSTEM_MESSAGE_CLOSE = "\n</system-reminder>"
INSTRUCTION_ROLES = ("system", "developer")


def content_text(content: Any, sep: str = "\n\n") -> str:
    """The text of a string content or of an array of text (or refusal) parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return sep.join(p.get("text") or p.get("refusal") or "" for p in content)


def _user_parts(role: str, content: Any) -> list[Item]:
    """Text parts in one message; an image ends the text before it and stands in a
    message of its own (LM Studio takes no text and image parts mixed in one message)."""
    if isinstance(content, str):
        return [Message(role, (Text(content),))] if content else []  # type: ignore[arg-type]
    items: list[Item] = []
    texts: list[Part] = []
    for part in content:
        if part["type"] == "text":
            if part["text"]:
                texts.append(Text(part["text"]))
        else:  # image_url, a data URL (the front refuses anything else)
            if texts:
                items.append(Message(role, tuple(texts)))  # type: ignore[arg-type]
                texts = []
            items.append(Message(role, (Image(part["image_url"]["url"]),)))  # type: ignore[arg-type]
    if texts:
        items.append(Message(role, tuple(texts)))  # type: ignore[arg-type]
    return items


def assistant_turn(message: dict[str, Any]) -> Turn:
    """An assistant message: its text as one output text, then one call per tool call.

    ``reasoning_content`` (and any other field) is not sent back: no engine can verify it
    and most chat templates drop past reasoning anyway."""
    items: list[Item] = []
    text = content_text(message.get("content"), sep="")
    if text:
        items.append(Message("assistant", (Text(text),)))
    for call in message.get("tool_calls") or ():
        function = call["function"]
        items.append(FunctionCall(call["id"], function["name"], function.get("arguments") or ""))
    return tuple(items)


def message_turn(message: dict[str, Any]) -> Turn:
    """One validated chat message as a turn.

    - ``user``: text and images (``image_url`` data URLs);
    - ``assistant``: see :func:`assistant_turn`;
    - ``tool``: a FunctionCallOutput answering ``tool_call_id``;
    - ``system``/``developer`` after the first other message: user text wrapped in
      ``<system-reminder>`` (most local chat templates reject a later system turn).
    """
    role = message["role"]
    content = message.get("content")
    if role == "assistant":
        return assistant_turn(message)
    if role == "tool":
        return (FunctionCallOutput(message["tool_call_id"], content_text(content, sep="\n")),)
    if role in INSTRUCTION_ROLES:
        text = content_text(content)
        if not text:
            return ()
        return (Message("user", (Text(SYSTEM_MESSAGE_OPEN + text + SYSTEM_MESSAGE_CLOSE),)),)
    return tuple(_user_parts("user", content))


def split_instructions(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """(the leading system/developer messages joined, the messages after them)."""
    lead = 0
    while lead < len(messages) and messages[lead]["role"] in INSTRUCTION_ROLES:
        lead += 1
    texts = [content_text(m.get("content")) for m in messages[:lead]]
    return "\n\n".join(t for t in texts if t), messages[lead:]


def tool_choice(choice: Any, parallel: bool) -> ToolChoice | None:
    if choice is None:
        return None if parallel else ToolChoice("auto", None, False)
    if isinstance(choice, dict):
        return ToolChoice("required", choice["function"]["name"], parallel)
    return ToolChoice(choice, None, parallel)


def conversation(messages: list[dict[str, Any]], *, tools: list[dict[str, Any]],
                 choice: Any = None, parallel: bool = True,
                 max_output_tokens: int | None = None, temperature: float | None = None,
                 top_p: float | None = None, top_k: int | None = None) -> Conversation:
    """The pivot conversation for validated messages and tools."""
    instructions, rest = split_instructions(messages)
    return Conversation(
        instructions=instructions,
        turns=tuple(message_turn(m) for m in rest),
        tools=tuple(FunctionTool(t["function"]["name"], t["function"].get("description") or "",
                                 t["function"].get("parameters")
                                 or {"type": "object", "properties": {}})
                    for t in tools),
        tool_choice=tool_choice(choice, parallel) if tools else None,
        max_output_tokens=max_output_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
    )
