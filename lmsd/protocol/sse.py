"""Server-sent events: an incremental decoder and the encoder.

The decoder copes with any chunking: lines of any length, CRLF split across chunks,
and UTF-8 sequences split across chunks (bytes are only decoded once a line is whole).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .text import json_utf8


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str | None
    data: str


class SSEDecoder:
    """Feed bytes, get complete events. Pure and incremental, like h11."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._event: str | None = None
        self._data: list[str] = []
        self._skip_lf = False

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        buf = self._buffer
        if self._skip_lf and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._skip_lf = False
        buf += chunk
        events: list[ServerSentEvent] = []
        start = 0
        n = len(buf)
        while start < n:
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, lf if lf >= 0 else n)
            if cr >= 0:
                end, nxt = cr, cr + 1
                if nxt < n and buf[nxt] == 0x0A:
                    nxt += 1
                elif nxt == n:
                    self._skip_lf = True
            elif lf >= 0:
                end, nxt = lf, lf + 1
            else:
                break
            event = self._line(bytes(buf[start:end]).decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
            start = nxt
        del buf[:start]
        return events

    def close(self) -> list[ServerSentEvent]:
        """End of stream. As the SSE spec says, an event cut off before its blank line
        is incomplete and is discarded, never delivered half-parsed."""
        self._buffer.clear()
        self._event, self._data = None, []
        return []

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            if not self._data and self._event is None:
                return None
            event = ServerSentEvent(self._event, "\n".join(self._data))
            self._event, self._data = None, []
            return event
        if line[0] == ":":
            return None
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode(event: dict[str, Any]) -> bytes:
    """One Anthropic event as an SSE frame named after its type."""
    return json_utf8(f"event: {event['type']}\ndata: {_dumps(event)}\n\n")


def encode_all(events: list[dict[str, Any]]) -> bytes:
    return b"".join(encode(e) for e in events)


PING = encode({"type": "ping"})
