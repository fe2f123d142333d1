"""The pivot: the one vocabulary every codec speaks, and the one JSON encoder.

A front's codec turns its client's request into a :class:`Conversation` and turns pivot
:data:`Event` values into its client's stream; an upstream dialect turns a conversation
into its server's request body and its server's stream into pivot events. No codec
imports another, so F fronts and D upstream kinds take F + D codecs, not F x D (the
path LiteLLM took). Named after hypercorn's ``protocol/events.py``: a small closed set of
frozen types and nothing else shared.

The shapes follow OpenAI Responses, since LM Studio speaks it and Responses items are
what lmsd hashes to verify chains: an item here renders to exactly one Responses item.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from .failures import Failure, UpstreamBroken

#: The one JSON encoder for everything lmsd sends: compact and UTF-8 as is, so the same
#: value is always the same bytes (prefix caches and chain hashes depend on that).
dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

# -- items: what a conversation is made of --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Image:
    url: str  # a data URL: every upstream kind takes one


Part = Text | Image


@dataclass(frozen=True, slots=True)
class Message:
    """A user or assistant message. A system note inside the history arrives as user text
    (most local chat templates reject a system turn after the first message)."""

    role: Literal["user", "assistant"]
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class FunctionCall:
    call_id: str
    name: str
    arguments: str  # JSON text, as the model wrote it or as lmsd rendered it


@dataclass(frozen=True, slots=True)
class FunctionCallOutput:
    call_id: str
    output: str
    #: Images a tool returned. Neither upstream kind takes them inside a tool output:
    #: each dialect attaches them after the turn's outputs in its own way.
    images: tuple[Image, ...] = ()


Item = Message | FunctionCall | FunctionCallOutput
#: The items of one client message. Kept apart so that a chained request can send the
#: items of only the new messages, and so that each message hashes on its own.
Turn = tuple[Item, ...]


@dataclass(frozen=True, slots=True)
class FunctionTool:
    name: str
    description: str
    parameters: dict[str, object]


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: Literal["auto", "none", "required"]
    name: str | None = None  # force this one tool
    parallel: bool = True


@dataclass(frozen=True, slots=True)
class Conversation:
    """One request to answer, whatever API it came in by."""

    instructions: str
    turns: tuple[Turn, ...]
    tools: tuple[FunctionTool, ...] = ()
    tool_choice: ToolChoice | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None


# -- events: what an answer streams as --------------------------------------------------------
# ``key`` names one part of the answer (a text, a reasoning text, a tool call) so that an
# upstream that interleaves parts can be followed; a front orders them as its API requires.


@dataclass(frozen=True, slots=True)
class Started:
    response_id: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    key: str
    text: str


@dataclass(frozen=True, slots=True)
class TextDone:
    key: str
    text: str | None = None  # the whole text, when the upstream restates it


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    key: str
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDone:
    key: str
    text: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    key: str
    call_id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolArgumentsDelta:
    key: str
    delta: str


@dataclass(frozen=True, slots=True)
class ToolCallDone:
    key: str
    arguments: str | None = None  # the whole arguments, when the upstream restates them


@dataclass(frozen=True, slots=True)
class Usage:
    """What the upstream reported, as reported (``tokens.context_usage`` reads it).

    ``prefilled_tokens`` is what the engine computed for this request (the prompt less
    what its prefix cache held) and ``prefill_ms`` how long that took, only when the
    engine says so (``protocol/servers/prefill.py``): a cache miss must be seen, not guessed."""

    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    prefilled_tokens: int | None = None
    prefill_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """The answer is complete: ``end`` (the model stopped), ``length`` (the output limit)
    or ``filter`` (a content filter)."""

    stop: Literal["end", "length", "filter"]
    usage: Usage | None = None
    response_id: str | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    error: Failure


Event = (Started | TextDelta | TextDone | ReasoningDelta | ReasoningDone | ToolCallStarted
         | ToolArgumentsDelta | ToolCallDone | Finished | Failed)

#: The events that are part of the answer itself (what the client would see).
OUTPUT = (TextDelta, TextDone, ReasoningDelta, ReasoningDone, ToolCallStarted,
          ToolArgumentsDelta, ToolCallDone)
UNFINISHED = "the engine ended the answer without finishing it (no output, no finish reason)"


def unfinished(upstream_name: str) -> Failed:
    """An answer that ended with nothing in it and no word of how it finished (a chat
    stream's ``[DONE]`` with no ``finish_reason``: llama-cpp-python's, when another request
    interrupts the one it serves): a broken answer, never an empty ``end_turn``."""
    return Failed(UpstreamBroken(f"{UNFINISHED} ({upstream_name})"))


# -- the canonical JSON of a turn -------------------------------------------------------------


def part_json(role: str, part: Part) -> dict[str, object]:
    if isinstance(part, Image):
        return {"type": "input_image", "image_url": part.url, "detail": "auto"}
    return {"type": "output_text" if role == "assistant" else "input_text", "text": part.text}


def message_json(role: str, parts: tuple[Part, ...] | list[Part]) -> dict[str, object]:
    return {"type": "message", "role": role, "content": [part_json(role, p) for p in parts]}


def turn_json(turn: Turn) -> list[dict[str, object]]:
    """A turn as Responses input items: what chains hash, and what LM Studio is sent.

    Deterministic, so prefix-stable: the same turn is always the same items, whatever
    follows it. A tool's images follow the turn's items in one user message of their own
    (LM Studio takes no images inside a ``function_call_output``, nor text and image parts
    mixed in one message).
    """
    out: list[dict[str, object]] = []
    images: list[Image] = []
    for item in turn:
        if isinstance(item, Message):
            out.append(message_json(item.role, item.parts))
        elif isinstance(item, FunctionCall):
            out.append({"type": "function_call", "call_id": item.call_id, "name": item.name,
                        "arguments": item.arguments})
        else:
            out.append({"type": "function_call_output", "call_id": item.call_id,
                        "output": item.output})
            images.extend(item.images)
    if images:
        out.append(message_json("user", images))
    return out
