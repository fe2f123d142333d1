"""Shortcuts from an Anthropic request to the pivot and the upstream bodies, for tests
that check translation and chaining through the Anthropic front's codec."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lmsd.protocol.anthropic.items import conversation, message_turn
from lmsd.protocol.anthropic.request import MessagesRequest
from lmsd.protocol.chain import ChainNode
from lmsd.protocol.chat.request import build_chat_request
from lmsd.protocol.pivot import Conversation, Turn, turn_json
from lmsd.protocol.plan import TurnPlan, plan_turn
from lmsd.protocol.responses.request import build_responses_request, join_items


def conv(req: MessagesRequest, *, strip_billing: bool = True,
         allowed_tools: frozenset[str] | None = None) -> Conversation:
    return conversation(req, strip_billing=strip_billing, allowed_tools=allowed_tools)


def plan(req: MessagesRequest, *, model: str = "m", nodes: Iterable[ChainNode] = (),
         chaining: bool = True, strip_billing: bool = True) -> TurnPlan:
    return plan_turn(conv(req, strip_billing=strip_billing), model=model, nodes=nodes,
                     chaining=chaining)


def answer(content: list[dict[str, Any]]) -> Turn:
    """lmsd's answer as the client will echo it back."""
    return message_turn({"role": "assistant", "content": content})


def message_items(message: dict[str, Any]) -> list[dict[str, Any]]:
    return turn_json(message_turn(message))


def input_items(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Responses ``input`` for a whole Anthropic history."""
    return join_items(message_items(m) for m in messages)


def responses_body(req: MessagesRequest, *, model: str = "m", strip_billing: bool = True,
                   allowed_tools: frozenset[str] | None = None) -> dict[str, Any]:
    return build_responses_request(
        conv(req, strip_billing=strip_billing, allowed_tools=allowed_tools), model=model,
        items=input_items(req.messages))


def chat_body(req: MessagesRequest, *, model: str = "m") -> dict[str, Any]:
    return build_chat_request(conv(req), model=model)
