"""``GET /status`` on the admin API: the one view across every part the supervisor built.

It belongs to the supervisor, the only code that holds all the parts; the admin API is
handed the function and knows none of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import trio

from .. import __version__
from ..bus import EventBus
from ..config import Settings, redacted
from ..fronts.drain import Drain
from ..metrics import Metrics
from ..sessions.store import SessionStore
from ..upstreams.models.view import models_json
from ..upstreams.router import Router


def trio_task_count() -> int:
    """Live trio tasks in this process (a leak shows as a count that keeps growing)."""
    count, stack = 0, [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


def status_json(*, settings: Settings, router: Router, store: SessionStore, bus: EventBus,
                metrics: Metrics, drain: Drain, started_at: float,
                recording: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The daemon's state for ``/status`` (``lmsd status`` formats it)."""
    first = router.backends[0]
    several = router.several
    return {
        "version": __version__,
        "pid": os.getpid(),
        "uptime_s": round(trio.current_time() - started_at, 1),
        # The first upstream, as before there were several; "upstreams" has them all.
        "upstream": first.state_json(),
        "upstreams": router.upstreams_json(),
        "models": [{**m.to_json(), **({"upstream": b.name} if several else {})}
                   for b in router.backends for m in b.watcher.models.values()],
        # What each upstream can serve, loaded or not (``lmsd models``, ``GET /models``);
        # "models" stays the watchers' loaded models, as clients read it.
        "served": models_json(router.backends),
        "watcher": first.watcher.to_json(),
        "requests": {**metrics.totals, "active_streams": drain.active_streams},
        "store": store.summary(),
        "event_subscribers": bus.subscribers,
        "trio_tasks": trio_task_count(),
        "draining": drain.started.is_set(),
        "settings": redacted(settings),
        # Which sessions are recorded (the dashboard's Record buttons read it).
        **({"recording": recording()} if recording is not None else {}),
    }
