"""Plan one turn: the full-history request, and a chained delta when the history allows.

The chain is verified on the pivot's canonical items (``pivot.turn_json``), whatever
the client's API and whatever the upstream kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .anthropic.upstream import build_messages_request
from .chain import ChainNode, choose_node, context_fingerprint, extend_hash, prefix_hashes
from .chat.request import build_chat_request
from .pivot import Conversation, Turn, turn_json
from .responses.request import build_responses_request, join_items
from .tokens import CHARS_PER_TOKEN


@dataclass
class TurnPlan:
    full: dict[str, Any]
    delta: dict[str, Any] | None = None
    node: ChainNode | None = None
    miss: str | None = None
    #: The upstream keeps no state (chat, messages): every turn is the whole history,
    #: by design, neither a chain hit nor a miss; its engine's prefix cache does the work.
    stateless: bool = False
    hashes: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    context: str = ""

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """What to try, in order: the delta, then (for a stale chain) the full history."""
        return [self.delta, self.full] if self.delta is not None else [self.full]

    @property
    def messages(self) -> int:
        return len(self.hashes) - 1

    def traffic(self, chained: bool) -> tuple[int, int, int, int]:
        """(items sent, items of the full history, tokens sent, tokens of the full history);
        tokens are estimated from the items' JSON size."""
        full_items = len(self.full.get("input") or self.full.get("messages") or ())
        full_tokens = round(self.sizes[-1] / CHARS_PER_TOKEN)
        if chained and self.delta is not None and self.node is not None:
            sent = round((self.sizes[-1] - self.sizes[self.node.length]) / CHARS_PER_TOKEN)
            return len(self.delta["input"]), full_items, sent, full_tokens
        return full_items, full_items, full_tokens, full_tokens


def plan_stateless_turn(conv: Conversation, *, model: str, named_as_required: bool = False
                        ) -> TurnPlan:
    """A Chat Completions turn: the whole (prefix-stable) history every time
    (``named_as_required``: see ``build_chat_request``)."""
    hashes, sizes = prefix_hashes([turn_json(t) for t in conv.turns])
    full = build_chat_request(conv, model=model, named_as_required=named_as_required)
    return TurnPlan(full, stateless=True, hashes=hashes, sizes=sizes)


def plan_messages_turn(conv: Conversation, *, model: str, session: str | None = None
                       ) -> TurnPlan:
    """An Anthropic Messages turn (an engine's own ``/v1/messages``): stateless like chat,
    the whole prefix-stable history every time; the session key in ``metadata.user_id``."""
    hashes, sizes = prefix_hashes([turn_json(t) for t in conv.turns])
    full = build_messages_request(conv, model=model, user_id=session)
    return TurnPlan(full, stateless=True, hashes=hashes, sizes=sizes)


def plan_turn(conv: Conversation, *, model: str, nodes: Iterable[ChainNode],
              chaining: bool = True) -> TurnPlan:
    """A Responses turn: the full history, and a delta on the best chain node."""
    per_turn = [turn_json(t) for t in conv.turns]
    hashes, sizes = prefix_hashes(per_turn)
    full = build_responses_request(conv, model=model, items=join_items(per_turn))
    context = context_fingerprint(model, full.get("instructions", ""), full.get("tools", ()),
                                  full.get("tool_choice"))
    plan = TurnPlan(full, hashes=hashes, sizes=sizes, context=context)
    if not chaining:
        plan.miss = "disabled"
        return plan
    decision = choose_node(nodes, hashes, context)
    plan.miss = decision.miss
    if decision.node is not None:
        plan.node = decision.node
        plan.delta = build_responses_request(
            conv, model=model, items=join_items(per_turn[decision.node.length:]),
            previous_response_id=decision.node.response_id)
    return plan


def next_node(plan: TurnPlan, answer: Turn, response_id: str, *, chained: bool) -> ChainNode:
    """The node for a completed turn: the request's history plus lmsd's answer, as the
    client will send it back next turn."""
    history = extend_hash(plan.hashes[-1], turn_json(answer))
    parent = plan.node.response_id if chained and plan.node else None
    return ChainNode(response_id, plan.messages + 1, history, plan.context, parent)
