"""The models lmsd starts itself: one ``[[models]]`` table each, naming the engine's command
line as llama-swap does, with ``${PORT}`` where lmsd puts the port it chose.

Pure: a description and its parser; ``upstreams/engines_started.py`` runs it. Not wired
into the settings yet (``sections.py`` does not read ``[[models]]``).

    [[models]]
    name = "qwen3-coder"
    command = ["llama-server", "-m", "/models/qwen3-coder.gguf", "--port", "${PORT}"]
    health = "/health"        # answers 200 once the model is loaded (the default)
    health_timeout = 300      # seconds a start may take before it counts as failed
    env = { CUDA_VISIBLE_DEVICES = "0" }

The command is an argument list, never a shell line: no quoting, no expansion, no pipes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .parsers import did_you_mean, named_tables

PORT = "${PORT}"
#: Any ``${...}``: ``${PORT}`` is the one lmsd knows, so another is a typo, not literal text.
MACRO = re.compile(r"\$\{([^}]*)\}")
DEFAULT_HEALTH = "/health"
DEFAULT_HEALTH_TIMEOUT = 300.0
NAME_CHARS = frozenset("._-:/")


@dataclass(frozen=True)
class ModelProcess:
    """One configured engine process: what to run to serve ``name``."""

    name: str
    command: tuple[str, ...]
    health: str = DEFAULT_HEALTH
    health_timeout: float = DEFAULT_HEALTH_TIMEOUT
    env: Mapping[str, str] = field(default_factory=dict)

    def argv(self, port: int) -> list[str]:
        """The command with ``${PORT}`` replaced by ``port`` wherever it appears (a whole
        argument or part of one, like ``--listen=127.0.0.1:${PORT}``)."""
        return [arg.replace(PORT, str(port)) for arg in self.command]


KEYS = frozenset({"name", "command", "health", "health_timeout", "env"})


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"name: expected a model name, got {value!r}")
    text = value.strip()
    if not all(c.isalnum() or c in NAME_CHARS for c in text):
        raise ValueError(f"name: use letters, digits or {' '.join(sorted(NAME_CHARS))}, "
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


def _health_timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"health_timeout: expected seconds (a positive number), got {value!r}")
    return float(value)


def _env(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or \
            not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f'env: expected a table of strings, {{ NAME = "value" }}, '
                         f"got {value!r}")
    return dict(value)


def model_process(value: Any) -> ModelProcess:
    """One ``[[models]]`` table, or ValueError naming the key that is wrong."""
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a table, got {value!r}")
    unknown = sorted(set(value) - KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}{did_you_mean(unknown[0], KEYS)} "
                         f"(known: {', '.join(sorted(KEYS))})")
    for key in ("name", "command"):
        if key not in value:
            raise ValueError(f"missing {key}")
    return ModelProcess(
        name=_name(value["name"]), command=_command(value["command"]),
        health=_health(value.get("health", DEFAULT_HEALTH)),
        health_timeout=_health_timeout(value.get("health_timeout", DEFAULT_HEALTH_TIMEOUT)),
        env=_env(value.get("env", {})))


def model_processes(value: Any) -> list[ModelProcess]:
    """The ``[[models]]`` array of tables; each model named once."""
    return named_tables(value, model_process, "[[models]]")
