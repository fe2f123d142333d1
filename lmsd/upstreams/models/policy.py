"""Which loaded models leave so that another can load, and which have been idle too long.

Pure: the pool (``pool.py``) hands in what is loaded and acts on the answer.

- **Groups**: models of one group take turns. Loading one unloads the others of its group
  (a pinned one refuses: the group is held).
- **Budget**: the loaded models' memory together stays within the budget. Past it, the
  least recently used model goes first. Pinned models never leave; a model with a request
  in flight does not leave now: the load waits for it.
- **Idle ttl**: a model lmsd loaded that no request used for its ttl is unloaded (never a
  pinned one, never one in use, never one the user loaded: lmsd does not fight them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class Resident:
    """A loaded model, as the policy weighs it."""

    name: str
    memory: int = 0  # bytes; 0: unknown, counts as nothing
    group: str = ""  # empty: a group of its own
    last_used: float = 0.0  # when a request last ended (or began) on it
    in_flight: int = 0
    pinned: bool = False
    by_lmsd: bool = False  # lmsd loaded it (its ttl applies)
    ttl: float = 0.0  # seconds unused before it leaves; 0: never


class Leave(NamedTuple):
    """A model to unload first: ``cause`` is ``group`` or ``budget``, ``why`` says it."""

    name: str
    cause: str
    why: str


@dataclass(frozen=True)
class Room:
    """What loading a model takes: ``unload`` these (in order, each with why), or wait for
    ``wait_for`` (in use now) and ask again, or cannot: ``refused`` says why."""

    unload: tuple[Leave, ...] = ()
    wait_for: tuple[str, ...] = ()
    refused: str | None = None

    @property
    def clear(self) -> bool:
        return not self.wait_for and self.refused is None


def _size(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB"


def make_room(name: str, memory: int, group: str, loaded: Iterable[Resident],
              budget: int) -> Room:
    """What must leave for ``name`` (``memory`` bytes, in ``group``) to load alongside
    ``loaded``, within ``budget`` bytes (0: no budget)."""
    others = [r for r in loaded if r.name != name]
    unload: list[Leave] = []
    wait: list[str] = []
    if group:
        for r in others:
            if r.group != group:
                continue
            if r.pinned:
                return Room(refused=f"{r.name} is pinned in group {group!r}, and models of "
                                    "one group take turns")
            if r.in_flight:
                wait.append(r.name)
            else:
                unload.append(Leave(r.name, "group", f"group {group!r}: {name} takes its turn"))
    if not budget:
        return Room(tuple(unload), tuple(wait))
    if memory > budget:
        return Room(refused=f"{name} needs {_size(memory)}, more than the whole budget of "
                            f"{_size(budget)}")
    leaving = {leave.name for leave in unload} | set(wait)
    staying = [r for r in others if r.name not in leaving]
    used = sum(r.memory for r in staying)
    # The least recently used of those free to go now; only when they are not enough, the
    # ones in use (the load waits for them): a busy model is never what a free one can spare.
    movable = sorted((r for r in staying if not r.pinned and r.memory),
                     key=lambda r: (r.in_flight > 0, r.last_used))
    for r in movable:
        if used + memory <= budget:
            break
        if r.in_flight:
            wait.append(r.name)
        else:
            unload.append(Leave(r.name, "budget", f"budget: {name} needs {_size(memory)}, "
                                   f"{_size(used)} of {_size(budget)} in use"))
        used -= r.memory
    if used + memory > budget:
        pinned = sum(r.memory for r in staying if r.pinned)
        return Room(refused=f"{name} needs {_size(memory)}: the budget is {_size(budget)} "
                            f"and pinned models take {_size(pinned)} of it")
    return Room(tuple(unload), tuple(wait))


def idle(loaded: Iterable[Resident], now: float) -> list[Resident]:
    """The models to unload for their idle ttl, longest idle first."""
    due = [r for r in loaded if r.by_lmsd and not r.pinned and not r.in_flight and r.ttl > 0
           and now - r.last_used >= r.ttl]
    return sorted(due, key=lambda r: r.last_used)
