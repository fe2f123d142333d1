"""A text part that a repaired call interrupts ends before the call; the text after the
call is a new part. Every front then sees text, call, text in order: Codex keeps its
history in the order of the ``output_item.done`` events, so a message still open across
the call would go back to LM Studio between the call and its output."""

from __future__ import annotations

from ..pivot import Event, TextDelta, TextDone, ToolCallStarted
from .filter import ToolCallRepair


class _Text:
    __slots__ = ("done", "key", "offset", "pending", "split")

    def __init__(self, key: str) -> None:
        self.key = key  # the key its text goes out under now
        self.pending = ""  # sent under ``key``, not yet ended
        self.offset = 0  # characters sent under earlier keys
        self.split = 0  # how many times a call ended it
        self.done: list[Event] | None = None  # what its TextDone became


class SplitRepair:
    """:class:`ToolCallRepair` with each interrupted text part split at the call."""

    def __init__(self, inner: ToolCallRepair) -> None:
        self.inner = inner
        self._texts: dict[str, _Text] = {}

    @property
    def repairs(self) -> list[str]:
        return self.inner.repairs

    def feed(self, event: Event) -> list[Event]:
        return self._split(self.inner.feed(event))

    def finish(self) -> list[Event]:
        return self._split(self.inner.finish())

    def _split(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            if isinstance(event, TextDelta):
                text = self._texts.setdefault(event.key, _Text(event.key))
                text.pending += event.text
                out.append(event if text.key == event.key else TextDelta(text.key, event.text))
            elif isinstance(event, TextDone):
                out += self._done(event)
            else:
                if isinstance(event, ToolCallStarted):
                    out += self._end_open_texts()
                out.append(event)
        return out

    def _end_open_texts(self) -> list[Event]:
        out: list[Event] = []
        for key, text in self._texts.items():
            if text.pending and text.done is None:
                out.append(TextDone(text.key, text.pending))
                text.offset += len(text.pending)
                text.pending = ""
                text.split += 1
                text.key = f"{key}~{text.split}"
        return out

    def _done(self, event: TextDone) -> list[Event]:
        text = self._texts.get(event.key)
        if text is None or not text.split:
            return [event]
        if text.done is None:
            rest = None if event.text is None else event.text[text.offset:]
            text.done = [TextDone(text.key, rest)] if text.pending else []
        return list(text.done)
