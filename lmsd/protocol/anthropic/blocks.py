"""Anthropic content blocks, and the one rule for the order they go out in.

Blocks go out in the order they first appeared, one at a time: only the block at the
cursor (``active``) is open; any other block's deltas wait in its ``pending`` list until
every block before it is finished and closed. That one rule gives contiguous indices and
never interleaves blocks (Anthropic never does, and Claude Code assumes it), whatever
order the upstream sends its parts in. It lives here alone, as h11's ``_state.py`` keeps
its connection rules; ``encode.py`` says what each pivot event means.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

Out = list[dict[str, Any]]
TEXT, THINKING, TOOL = "text", "thinking", "tool_use"


def thinking_signature(text: str) -> str:
    """A stable signature for locally generated thinking (Claude Code requires one)."""
    return "lmsd1." + hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(slots=True)
class Block:
    kind: str  # TEXT | THINKING | TOOL
    start: dict[str, Any]  # the content_block of its content_block_start
    pending: list[dict[str, Any]] = field(default_factory=list)  # deltas held back
    chunks: list[str] = field(default_factory=list)  # text / thinking / arguments sent
    size: int = 0  # their total length
    held: str = ""  # text held back while it may be the start of a stop sequence
    index: int = -1
    live: bool = False  # tool arguments: streaming as they come (they start with "{")
    finished: bool = False  # upstream said this block is complete
    open: bool = False

    # What was sent is kept in pieces and joined when read: ``+=`` on an attribute
    # copies the whole string each time, 0.5 s of CPU for a 160 KB thinking block.
    def add(self, text: str) -> None:
        self.chunks.append(text)
        self.size += len(text)

    def sent(self) -> str:
        if len(self.chunks) > 1:
            self.chunks[:] = ["".join(self.chunks)]
        return self.chunks[0] if self.chunks else ""

    def replace(self, text: str) -> None:
        self.chunks[:] = [text]
        self.size = len(text)


class Blocks:
    """The blocks of one message, by (kind, pivot key), in the order they appeared."""

    __slots__ = ("_by_key", "_cursor", "_next_index", "order")

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], Block] = {}
        self.order: list[Block] = []
        self._next_index = 0
        self._cursor = 0  # position in order of the first block not yet closed

    def get(self, kind: str, key: str) -> Block | None:
        return self._by_key.get((kind, key))

    def get_or_add(self, kind: str, key: str, start: dict[str, Any]) -> Block:
        """The block for this part; the first ``start`` given for it stands."""
        block = self._by_key.get((kind, key))
        if block is None:
            block = Block(kind, start)
            self._by_key[(kind, key)] = block
            self.order.append(block)
        return block

    def active(self) -> Block | None:
        return self.order[self._cursor] if self._cursor < len(self.order) else None

    def emit(self, block: Block, delta: dict[str, Any]) -> Out:
        """Send a delta to ``block`` now if it is the active one, else hold it."""
        order, cursor = self.order, self._cursor
        if cursor >= len(order) or block is not order[cursor]:  # not the active block
            block.pending.append(delta)
            return []
        out = [] if block.open else self.open(block)
        out.append({"type": "content_block_delta", "index": block.index, "delta": delta})
        return out

    def open(self, block: Block) -> Out:
        """Start ``block`` (once), with the deltas it was holding."""
        if block.open:
            return []
        block.open = True
        block.index = index = self._next_index
        self._next_index += 1
        out: Out = [{"type": "content_block_start", "index": index,
                     "content_block": block.start}]
        for delta in block.pending:
            out.append({"type": "content_block_delta", "index": index, "delta": delta})
        block.pending.clear()
        return out

    def finish(self, block: Block) -> Out:
        """Upstream is done with ``block``: close what can be closed."""
        block.finished = True
        return self.close_finished()

    def close_finished(self) -> Out:
        """Close the active block while upstream has finished it, opening the next."""
        out: Out = []
        while (block := self.active()) is not None and block.finished:
            self._cursor += 1
            if not (block.open or block.pending or block.size or block.held):
                continue  # nothing ever arrived for it: no empty block
            out += self.open(block)
            if block.held:  # no stop sequence after all: the held text is text
                text, block.held = block.held, ""
                block.add(text)
                out.append({"type": "content_block_delta", "index": block.index,
                            "delta": {"type": "text_delta", "text": text}})
            if block.kind == THINKING:
                out.append({"type": "content_block_delta", "index": block.index, "delta": {
                    "type": "signature_delta", "signature": thinking_signature(block.sent())}})
            out.append({"type": "content_block_stop", "index": block.index})
        if (block := self.active()) is not None and (block.pending or block.kind == TOOL):
            out += self.open(block)  # a tool call shows at once, before its arguments
        return out
