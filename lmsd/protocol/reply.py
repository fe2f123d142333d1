"""What every front's reply shares (``exchange.Reply``): its encoder does the work.

A reply passes pivot events to its front's encoder and returns what the encoder makes of
them; on the way it notes when the first content goes out (time to first token), which
only the front can tell from its own events.
"""

from __future__ import annotations

from typing import Any, Protocol

from .failures import Failure
from .pivot import Event, Usage


class Encoder(Protocol):
    model: str

    @property
    def done(self) -> bool: ...
    @property
    def failure(self) -> Failure | None: ...
    def start(self) -> list[Any]: ...
    def feed(self, event: Event) -> list[Any]: ...
    def finish(self) -> list[Any]: ...
    def fail(self, error: Failure) -> list[Any]: ...


class EncodedReply:
    """The delegation to ``encoder``; a front's reply adds what is its own (the answer's
    turn, the whole answer, the log fields) and says what counts as content."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.output_started = False  # the first content went out (time to first token)

    @property
    def model(self) -> str:
        return self.encoder.model

    @property
    def done(self) -> bool:
        return self.encoder.done

    @property
    def failure(self) -> Failure | None:
        return self.encoder.failure

    @property
    def response_id(self) -> str | None:
        """The upstream's stored response (what the next turn chains from)."""
        return getattr(self.encoder, "response_id", None)

    @property
    def upstream_usage(self) -> Usage | None:
        """The usage the upstream's ``Finished`` carried, as decoded (its prefill too):
        None when none came, or lmsd ended the answer before it did."""
        return getattr(self.encoder, "upstream_usage", None)

    @property
    def cut_short(self) -> bool:
        """lmsd ended the answer itself (a stop sequence): stop reading the upstream."""
        return self.encoder.done and getattr(self.encoder, "stop_sequence", None) is not None

    def is_content(self, out: list[Any]) -> bool:
        """Whether ``out`` carries the answer's first content."""
        raise NotImplementedError

    def _seen(self, out: list[Any]) -> list[Any]:
        if not self.output_started and self.is_content(out):
            self.output_started = True
        return out

    def start(self) -> list[Any]:
        return self._seen(self.encoder.start())

    def feed(self, event: Event) -> list[Any]:
        return self._seen(self.encoder.feed(event))

    def finish(self) -> list[Any]:
        return self._seen(self.encoder.finish())

    def fail(self, error: Failure) -> list[Any]:
        return self._seen(self.encoder.fail(error))
