"""What a finished turn leaves in the session store: its answer as the next turn's chain
node (when the answer is complete and unrepaired), the node it chained on touched, its
counters, and the ``chain.decision`` event that explains them.

A repaired answer holds a call the engine never produced, so it is not stored as a chain
node: the next turn chains from the node before it and sends the repaired call and its
output as new items, a history in which the call really happened and nothing the engine
stores is contradicted.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..log import event
from ..protocol.pivot import Turn, Usage
from ..protocol.plan import TurnPlan, next_node
from ..protocol.servers.prefill import prefill_fields
from .store import SessionKey, SessionStore


@dataclass(frozen=True)
class Outcome:
    """How one turn went, as the store counts it."""

    message_id: str  # the id the client saw (the log's ``id``)
    front: str  # which API the client spoke
    upstream: str  # where it ran ("" when unnamed)
    chained: bool  # it was sent as a delta on ``plan.node``, and that held
    stale: bool  # the chain was gone and the turn went again in full
    answer: Turn | None  # the answer's turn, when the reply is complete enough to chain
    response_id: str | None  # the upstream's id of the answer
    repaired: int = 0  # tool calls the repair filter made
    usage: Usage | None = None  # what the engine said it prefilled


async def remember_turn(store: SessionStore, key: SessionKey, plan: TurnPlan,
                        outcome: Outcome) -> None:
    """Store the answer as a chain node if it is complete; count the turn. The writes go
    to the store's writer in order and the last is awaited: all are done on return."""
    chained = outcome.chained
    complete = outcome.answer is not None and not outcome.repaired
    if complete:
        assert outcome.answer is not None
        node = next_node(plan, outcome.answer, outcome.response_id or "", chained=chained)
        node.upstream = outcome.upstream
        await store.add_node(key, node, wait=False)
    if chained and plan.node is not None:
        await store.touch(plan.node, wait=False)
    items_sent, items_full, tokens_sent, tokens_full = plan.traffic(chained)
    miss = "stale_upstream" if outcome.stale else plan.miss
    unchained = plan.stateless and not chained  # by design: neither a hit nor a miss
    prefill = prefill_fields(outcome.usage)
    await store.record_turn(
        key, hit=chained, miss=None if chained else miss, unchained=unchained,
        items_sent=items_sent, items_full=items_full, tokens_sent=tokens_sent,
        tokens_full=tokens_full,
        response_id=outcome.response_id if complete else None, front=outcome.front,
        repaired=outcome.repaired, upstream=outcome.upstream or None,
        prefilled=prefill.get("prefilled_tokens"), cached=prefill.get("cached_tokens"),
        prefill_ms=prefill.get("prefill_ms"))
    event("chain.decision", id=outcome.message_id, session=key[0],
          agent=key[1], front=outcome.front, upstream=outcome.upstream or None,
          chained=chained,
          miss=None if chained else miss,
          **({"unchained": True} if unchained else {}),
          previous_response_id=plan.node.response_id if chained and plan.node else None,
          stored=complete, items_sent=items_sent, items_full=items_full,
          **({"repaired": outcome.repaired} if outcome.repaired else {}))
