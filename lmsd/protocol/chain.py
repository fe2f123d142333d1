"""Chain fingerprints and the chain matcher: when may a request continue a stored response?

A request may be sent as a delta (its new messages, with ``previous_response_id``) only
if the history the client holds is exactly what LM Studio holds for that response, plus
new messages. "Exactly" is judged on what lmsd would send upstream: each message is
fingerprinted by its translated Responses items. That normalizes what Claude Code
changes between turns (the moving ``cache_control`` breakpoint, a single text block
collapsing to a string, thinking blocks, which are never sent) and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

ROOT = "0" * 32

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _digest(data: str) -> str:
    """A 128-bit content hash (blake2b: fast, and collisions are not a practical risk)."""
    try:
        raw = data.encode()
    except UnicodeEncodeError:
        # The halves of a surrogate pair, streamed in two chunks (sse.encode), are joined
        # as the client's strings join them and send them back; a lone half is U+FFFD.
        raw = data.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def extend_hash(previous: str, items: list[dict[str, Any]]) -> str:
    return _digest(previous + _dumps(items))


def prefix_hashes(per_message_items: Sequence[list[dict[str, Any]]]
                  ) -> tuple[list[str], list[int]]:
    """Rolling hashes and sizes: ``h[k]`` fingerprints the first ``k`` messages (``h[0]``
    is ROOT), and ``sizes[k]`` is the JSON length of their items."""
    hashes, sizes = [ROOT], [0]
    for items in per_message_items:
        text = _dumps(items)
        hashes.append(_digest(hashes[-1] + text))
        sizes.append(sizes[-1] + len(text))
    return hashes, sizes


def context_fingerprint(model: str, instructions: str, tools: Iterable[dict[str, Any]],
                        tool_choice: Any = None) -> str:
    """What must not change along a chain: the model, the system prompt and the tools.
    Remembered per distinct context (``CONTEXTS``): an agent sends the same tens of KB of
    system prompt and tools on every turn."""
    return CONTEXTS.fingerprint(model, instructions, list(tools), tool_choice)


def same_json(a: Any, b: Any) -> bool:
    """``a`` and ``b`` (parsed JSON) encode to the same JSON text: ``==`` with the types
    and the key order that JSON text keeps (``1``, ``1.0`` and ``true`` are equal in
    Python, and ``{"a", "b"}`` equals ``{"b", "a"}``)."""
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is dict:
        return len(a) == len(b) and list(a) == list(b) and all(
            map(same_json, a.values(), b.values()))
    if kind is list or kind is tuple:
        return len(a) == len(b) and all(map(same_json, a, b))
    return bool(a == b)


class ContextCache:
    """The context fingerprints of the last ``size`` distinct contexts. Found by cheap
    equality on the parsed values (a few times faster than encoding and hashing them),
    never by a hash of them: a hit is exact."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, str, int], tuple[list[Any], Any, str]] = \
            OrderedDict()

    def fingerprint(self, model: str, instructions: str, tools: list[Any],
                    tool_choice: Any) -> str:
        key = (model, instructions, len(tools))  # a str's hash is cached: cheap
        kept = self._entries.get(key)
        if kept is not None and same_json(kept[1], tool_choice) and same_json(kept[0], tools):
            self._entries.move_to_end(key)
            return kept[2]
        digest = _digest(_dumps([model, instructions, tools, tool_choice]))
        self._entries[key] = (tools, tool_choice, digest)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return digest

    def __len__(self) -> int:
        return len(self._entries)


#: The daemon's: a few agents, each with one system prompt and tool set at a time.
CONTEXTS = ContextCache()


@dataclass(slots=True)
class ChainNode:
    """A response LM Studio holds: the history it answered plus its answer.

    ``length`` messages (the request's, plus the assistant turn lmsd produced) hash to
    ``history``. Nodes are immutable: a new turn adds a node, it never edits one.
    """

    response_id: str
    length: int
    history: str
    context: str
    parent: str | None = None
    created: float = 0.0
    last_used: float = 0.0
    upstream: str = ""  # the upstream that holds it ("": stored before there were several)


@dataclass(frozen=True, slots=True)
class ChainDecision:
    node: ChainNode | None
    miss: str | None  # why there is no node: no_node, context_changed, history_mismatch


def choose_node(nodes: Iterable[ChainNode], hashes: Sequence[str], context: str
                ) -> ChainDecision:
    """The longest stored history that the incoming one extends with new messages.

    ``hashes`` are the prefix hashes of the incoming messages. A node qualifies when its
    context matches and its history equals a proper prefix of the incoming messages.
    """
    total = len(hashes) - 1
    best: ChainNode | None = None
    seen_any = same_context = False
    for node in nodes:
        seen_any = True
        if node.context != context:
            continue
        same_context = True
        if node.length < total and hashes[node.length] == node.history and (
            best is None or node.length > best.length
        ):
            best = node
    if best is not None:
        return ChainDecision(best, None)
    if not seen_any:
        return ChainDecision(None, "no_node")
    return ChainDecision(None, "history_mismatch" if same_context else "context_changed")
