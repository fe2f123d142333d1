"""The loop every front's encoder shares: pivot events in, its client's events out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from .failures import Failure
from .pivot import Event


class PivotEncoder:
    """One handler per pivot event type (the subclass's ``handlers``), the client's
    opening events before the first, and a failure when the upstream's stream ends
    without saying how (neither ``Finished`` nor ``Failed``)."""

    handlers: ClassVar[Mapping[type, Callable[[Any, Any], list[Any]]]]
    upstream_name: str
    started: bool
    done: bool

    def start(self) -> list[Any]:
        raise NotImplementedError

    def fail(self, error: Failure) -> list[Any]:
        raise NotImplementedError

    def feed(self, event: Event) -> list[Any]:
        """Encode one pivot event."""
        if self.done:
            return []
        handle = self.handlers[type(event)]
        if self.started:
            return handle(self, event)
        return self.start() + handle(self, event)

    def finish(self) -> list[Any]:
        """The upstream's stream ended; unless the answer did, that is a failure (a plain
        Failure: the server broke its own protocol)."""
        if self.done:
            return []
        return self.fail(Failure(f"{self.upstream_name} closed the stream before the "
                                 "response was complete"))
