"""``lmsd doctor``'s checks of the models lmsd starts itself (``[[models]]`` with a
``command``), read from the config without starting anything: can its program run, is its
model file there, can it ever fit in ``memory_budget``, and does its command let lmsd keep a
conversation's cache across a swap (``--slot-save-path``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping

from ...config import Settings
from ...config.models import ModelEntry
from ..text import size
from .result import FAIL, OK, WARN, Result

#: What a started model whose engine is stopped says in doctor while the daemon runs.
STOPPED = "stopped (starts on demand)"


def check_started(settings: Settings, environ: Mapping[str, str]) -> list[Result]:
    """The checks of every started model, each named by it (``engine [name]``, ...)."""
    results: list[Result] = []
    for entry in (m for m in settings.models if m.started):
        for result in (check_program(entry, environ), check_model_file(entry),
                       check_fits(entry, settings.memory_budget), check_slot_saving(entry)):
            if result is not None:
                results.append(Result(f"{result.check} [{entry.name}]", result.status,
                                      result.detail, result.fix))
    return results


def check_program(entry: ModelEntry, environ: Mapping[str, str]) -> Result:
    """Its command's program: an absolute (or relative) path that is an executable file,
    or a name found on the PATH lmsd would be started with."""
    program = entry.command[0]
    path = program if os.sep in program else \
        shutil.which(program, path=environ.get("PATH", os.defpath))
    if path is None:
        return Result("engine", FAIL, f"{program!r} is not on PATH ({environ.get('PATH', '')})",
                      f"give [[models]] {entry.name!r}'s command the program's absolute path, "
                      "or add its directory to the PATH lmsd runs with")
    full = os.path.expanduser(path)
    if not os.path.isfile(full):
        return Result("engine", FAIL, f"{program!r} does not exist",
                      f"correct the first argument of [[models]] {entry.name!r}'s command")
    if not os.access(full, os.X_OK):
        return Result("engine", FAIL, f"{program!r} is not executable",
                      f"chmod +x {full}")
    return Result("engine", OK, f"{full} runs this model")


def check_model_file(entry: ModelEntry) -> Result | None:
    """The file after ``-m``/``--model``: there and readable (llama-server exits at once
    otherwise). None when the command names no model file (a ``-hf`` download, say)."""
    given = entry.model_file()
    if given is None:
        return None
    path = os.path.expanduser(given)
    if not os.path.isfile(path):
        return Result("model file", FAIL, f"{given} does not exist",
                      f"correct the path after -m in [[models]] {entry.name!r}'s command")
    if not os.access(path, os.R_OK):
        return Result("model file", FAIL, f"{given} is not readable",
                      f"let the user lmsd runs as read it (chmod o+r {path})")
    return Result("model file", OK, f"{given} ({size(os.path.getsize(path))})")


def check_fits(entry: ModelEntry, budget: int) -> Result | None:
    """A model larger than the whole budget can never be loaded: lmsd refuses it rather
    than unload everything else for nothing."""
    needs = entry.memory_bytes()
    if not budget or not needs:
        return None
    how = "its memory" if entry.memory else "its model file's size"
    if needs > budget:
        return Result("memory", FAIL, f"needs {size(needs)} ({how}), more than the whole "
                      f"memory_budget {size(budget)}: it can never be loaded",
                      "raise memory_budget, or set this model's memory if the file's size "
                      "overstates it")
    return Result("memory", OK, f"needs {size(needs)} ({how}) of memory_budget {size(budget)}")


def check_slot_saving(entry: ModelEntry) -> Result:
    """With ``--slot-save-path`` lmsd saves a conversation's slot before it stops the
    engine for another model and restores it after; without, the swap back re-prefills."""
    if any(a == "--slot-save-path" or a.startswith("--slot-save-path=")
           for a in entry.command):
        return Result("cache", OK, "--slot-save-path: lmsd saves its conversations before "
                      "a swap and restores them when it comes back")
    return Result("cache", WARN, "no --slot-save-path: after a swap to another model and "
                  "back, its conversation is prefilled again",
                  "add --slot-save-path DIR/ to its command (lmsd saves and restores the "
                  "conversation across a swap)")
