"""What lmsd knows of each model it serves on demand: one ``[[models]]`` table each.

A table with a ``command`` is a model lmsd starts itself, as llama-swap does: the engine's
command line, with ``${PORT}`` where lmsd puts the port it chose. A table without one names
a model an upstream loads (LM Studio) and says how lmsd treats it: its memory, its group,
its idle ``ttl``, whether it is ``pinned``.

Pure: a description and its parser; ``upstreams/engines_started.py`` runs a command and
``upstreams/models/`` keeps the models within their budget.

    [[models]]
    name = "qwen3-coder"
    command = ["llama-server", "-m", "/models/qwen3-coder.gguf", "--port", "${PORT}"]
    health = "/health"        # answers 200 once the model is loaded (the default)
    health_timeout = 300      # seconds a start may take before it counts as failed
    env = { CUDA_VISIBLE_DEVICES = "0" }
    memory = "18GiB"          # what it takes loaded (default: its -m file's size)
    group = "main"            # models of one group take turns: one loaded at a time
    ttl = 1800                # seconds unused before lmsd unloads it (0: never)
    pinned = false            # true: never unloaded to make room, nor for its ttl

The command is an argument list, never a shell line: no quoting, no expansion, no pipes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .parsers import boolean, byte_size, check_keys, named_tables

PORT = "${PORT}"
#: Any ``${...}``: ``${PORT}`` is the one lmsd knows, so another is a typo, not literal text.
MACRO = re.compile(r"\$\{([^}]*)\}")
DEFAULT_HEALTH = "/health"
DEFAULT_HEALTH_TIMEOUT = 300.0
NAME_CHARS = frozenset("._-:/")
#: The flags llama-server (and llama-cpp-python's server) take the model file with.
MODEL_FLAGS = ("-m", "--model")


@dataclass(frozen=True)
class ModelEntry:
    """One configured model: what to run to serve ``name`` (if lmsd starts it), and how
    it shares the box."""

    name: str
    command: tuple[str, ...] = ()
    health: str = DEFAULT_HEALTH
    health_timeout: float = DEFAULT_HEALTH_TIMEOUT
    env: Mapping[str, str] = field(default_factory=dict)
    memory: int = 0  # bytes; 0: unknown (the engine's listing, or the model file, tells)
    group: str = ""  # empty: a group of its own
    ttl: float | None = None  # None: the global model_ttl
    pinned: bool = False

    @property
    def started(self) -> bool:
        """lmsd runs this model's engine itself."""
        return bool(self.command)

    def argv(self, port: int) -> list[str]:
        """The command with ``${PORT}`` replaced by ``port`` wherever it appears (a whole
        argument or part of one, like ``--listen=127.0.0.1:${PORT}``)."""
        return [arg.replace(PORT, str(port)) for arg in self.command]

    def model_file(self) -> str | None:
        """The file after ``-m``/``--model`` (or ``--model=...``) in the command, if any."""
        for i, arg in enumerate(self.command):
            if arg in MODEL_FLAGS and i + 1 < len(self.command):
                return self.command[i + 1]
            if arg.startswith("--model="):
                return arg.split("=", 1)[1]
        return None

    def memory_bytes(self) -> int:
        """What it takes loaded: ``memory``, else the size of its model file (the weights
        are most of it), else 0 (unknown: never counted against a budget)."""
        if self.memory:
            return self.memory
        path = self.model_file()
        if path:
            try:
                return os.path.getsize(os.path.expanduser(path))
            except OSError:
                return 0
        return 0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "command": list(self.command), "health": self.health,
                "health_timeout": self.health_timeout, "env": sorted(self.env),
                "memory": self.memory, "group": self.group, "ttl": self.ttl,
                "pinned": self.pinned}


KEYS = frozenset({"name", "command", "health", "health_timeout", "env", "memory", "group",
                  "ttl", "pinned"})


def _name(value: Any, what: str = "name") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what}: expected a model name, got {value!r}")
    text = value.strip()
    if not all(c.isalnum() or c in NAME_CHARS for c in text):
        raise ValueError(f"{what}: use letters, digits or {' '.join(sorted(NAME_CHARS))}, "
                         f"got {value!r}")
    return text


def _command(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ValueError("command: write the command line as a list of arguments, "
                         '["llama-server", "-m", "model.gguf", "--port", "${PORT}"] '
                         "(lmsd runs no shell)")
    if not isinstance(value, list | tuple) or not value or \
            not all(isinstance(a, str) for a in value):
        raise ValueError(f"command: expected a non-empty list of strings, got {value!r}")
    if not value[0].strip():
        raise ValueError("command: the first argument must name the program")
    for arg in value:
        for macro in MACRO.findall(arg):
            if f"${{{macro}}}" != PORT:
                raise ValueError(f"command: unknown ${{{macro}}} in {arg!r} (lmsd fills in "
                                 f"only {PORT})")
    if not any(PORT in arg for arg in value):
        raise ValueError(f"command: put {PORT} where the engine takes its port "
                         '("--port", "${PORT}"): lmsd chooses a free one')
    return tuple(value)


def _health(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"health: expected a path like {DEFAULT_HEALTH!r}, got {value!r}")
    return value


def _seconds(key: str, value: Any, *, zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or \
            (value == 0 and not zero):
        wanted = "0 (never) or more" if zero else "a positive number"
        raise ValueError(f"{key}: expected seconds ({wanted}), got {value!r}")
    return float(value)


def _env(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or \
            not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f'env: expected a table of strings, {{ NAME = "value" }}, '
                         f"got {value!r}")
    return dict(value)


def _keyed(key: str, parse: Any, value: Any) -> Any:
    try:
        return parse(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{key}: {exc}") from None


def model_entry(value: Any) -> ModelEntry:
    """One ``[[models]]`` table, or ValueError naming the key that is wrong."""
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a table, got {value!r}")
    check_keys(value, KEYS)
    if "name" not in value:
        raise ValueError("missing name")
    command = _command(value["command"]) if "command" in value else ()
    for key in ("health", "health_timeout", "env"):
        if key in value and not command:
            raise ValueError(f"{key}: only for a model lmsd starts (give its command)")
    return ModelEntry(
        name=_name(value["name"]), command=command,
        health=_health(value.get("health", DEFAULT_HEALTH)),
        health_timeout=_seconds("health_timeout",
                                value.get("health_timeout", DEFAULT_HEALTH_TIMEOUT), zero=False),
        env=_env(value.get("env", {})),
        memory=_keyed("memory", byte_size, value.get("memory", 0)),
        group=_name(value["group"], "group") if "group" in value else "",
        ttl=_seconds("ttl", value["ttl"], zero=True) if "ttl" in value else None,
        pinned=_keyed("pinned", boolean, value.get("pinned", False)))


def model_entries(value: Any) -> list[ModelEntry]:
    """The ``[[models]]`` array of tables; each model named once."""
    return named_tables(value, model_entry, "[[models]]")
