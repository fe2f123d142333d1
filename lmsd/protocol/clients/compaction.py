"""When Claude Code compacts, and the environment that makes it compact in time.

Claude Code 2.1.329 never learns a window below 100k tokens from a gateway: its model
discovery ignores ``max_input_tokens``/``context_window`` outside 100k..10M. Left alone it
assumes 200k (or 1M) against a 32k local model and only compacts after an overflow. What its
bundled code does (read from the binary, checked with ``/context``):

- window: for ids in Claude's catalog (``claude-*``) 200k with
  ``CLAUDE_CODE_DISABLE_1M_CONTEXT=1`` (else up to 1M); for other ids
  ``CLAUDE_CODE_MAX_CONTEXT_TOKENS`` when set, else 200k/1M the same way;
- ``CLAUDE_CODE_AUTO_COMPACT_WINDOW`` caps the window compaction works from (a value below
  100k counts as 100k);
- effective window ``E = window - min(max output, 20k)`` where max output is
  ``CLAUDE_CODE_MAX_OUTPUT_TOKENS`` (32k for unknown ids);
- it compacts at ``E - 13k``, or at ``min(floor(E * pct / 100), E - 13k)`` with
  ``CLAUDE_AUTOCOMPACT_PCT_OVERRIDE=pct`` (0 < pct <= 100): a percentage lowers, never raises.

:func:`claude_code_env` picks the values so Claude Code compacts where it would if it knew the
loaded context; :func:`simulate` replays its arithmetic on any environment (``lmsd doctor``).

Since 2.1.330 the model id also picks the system prompt: ids outside Claude's catalog get the
"lean" prompt and short tool descriptions, and ``CLAUDE_CODE_SIMPLE_SYSTEM_PROMPT`` forces
either way for any id. Measured on 2.1.337 (``claude -p "say hi"``): 28.5 KB of instructions
and 48.2 KB of tools with the full prompt, 6.9 KB and 32.1 KB with the lean one, the same
twelve tools; :data:`SIMPLE_PROMPT` is what ``lmsd env`` sets by default.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..models import is_claude_name

SUMMARY_BUFFER = 13_000  # Claude Code keeps this much below the effective window
OUTPUT_RESERVE_CAP = 20_000  # min(max output, 20k) is kept free for the reply
DEFAULT_MAX_OUTPUT = 32_000  # Claude Code's max output for ids it does not know
ASSUMED_WINDOW = 200_000  # claude-* (and unknown ids) with CLAUDE_CODE_DISABLE_1M_CONTEXT=1
UNPINNED_WINDOW = 1_000_000  # what it may assume without that variable
AUTO_COMPACT_MIN = 100_000  # CLAUDE_CODE_AUTO_COMPACT_WINDOW floor
DISCOVERY_MIN, DISCOVERY_MAX = 100_000, 10_000_000  # gateway discovery ignores the rest
MIN_OUTPUT = 4096

MAX_CONTEXT = "CLAUDE_CODE_MAX_CONTEXT_TOKENS"
MAX_OUTPUT = "CLAUDE_CODE_MAX_OUTPUT_TOKENS"
AUTO_WINDOW = "CLAUDE_CODE_AUTO_COMPACT_WINDOW"
PCT = "CLAUDE_AUTOCOMPACT_PCT_OVERRIDE"
DISABLE_1M = "CLAUDE_CODE_DISABLE_1M_CONTEXT"
SIMPLE_PROMPT = "CLAUDE_CODE_SIMPLE_SYSTEM_PROMPT"  # "1": the lean prompt whatever the id
KNOBS = (DISABLE_1M, MAX_CONTEXT, MAX_OUTPUT, AUTO_WINDOW, PCT)


def max_output(context: int) -> int:
    """The reply cap for a context: an eighth of it, 4k to 32k (Claude Code's default)."""
    return min(DEFAULT_MAX_OUTPUT, max(MIN_OUTPUT, context // 8 // 1024 * 1024))


def target_threshold(context: int) -> int:
    """Where Claude Code should compact: its own formula applied to the loaded context."""
    return context - min(max_output(context), OUTPUT_RESERVE_CAP) - SUMMARY_BUFFER


def claude_code_env(context: int, model: str | None = None) -> dict[str, str]:
    """The variables that make Claude Code compact before ``context`` overflows.

    ``model`` is the id Claude Code is started with (``ANTHROPIC_MODEL``); None or a
    ``claude-*`` name means Claude's own names, which lmsd maps to the loaded model.
    Below 100k, Claude names need a percentage of a 100k auto-compact window; that
    percentage would also shrink a local id's honest window, so a local id gets
    ``CLAUDE_CODE_MAX_CONTEXT_TOKENS`` instead (and ``/context`` shows the real window).
    """
    out = max_output(context)
    env = {DISABLE_1M: "1", MAX_OUTPUT: str(out)}
    local = model is not None and not is_claude_name(model)
    if context >= AUTO_COMPACT_MIN or local:
        env[MAX_CONTEXT] = str(context)
        env[AUTO_WINDOW] = str(max(context, AUTO_COMPACT_MIN))
        return env
    env[AUTO_WINDOW] = str(AUTO_COMPACT_MIN)
    effective = AUTO_COMPACT_MIN - min(out, OUTPUT_RESERVE_CAP)
    target = max(target_threshold(context), 1)
    env[PCT] = f"{math.floor(target * 10000 / effective) / 100:g}"
    return env


@dataclass
class Compaction:
    """What Claude Code will do with an environment: its window and compaction point."""

    window: int
    threshold: int


def _tokens(value: str | None) -> int | None:
    """A token count as Claude Code reads one (``32768``, ``100k``, ``1m``); None if unset."""
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", value)
    if not match:
        return None
    scale = {"": 1, "k": 1000, "m": 1_000_000}[match[2].lower()]
    return int(float(match[1]) * scale)


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def simulate(environ: Mapping[str, str], model: str | None = None) -> Compaction:
    """Claude Code 2.1.329's window and compaction point for ``model`` under ``environ``.

    Gateway discovery is left out: it only ever reports windows of 100k and more.
    """
    model = model or environ.get("ANTHROPIC_MODEL") or "claude-sonnet-4-6"
    pinned = _flag(environ.get(DISABLE_1M))
    window = ASSUMED_WINDOW if pinned else UNPINNED_WINDOW
    if not is_claude_name(model):
        declared = _tokens(environ.get(MAX_CONTEXT))
        if declared:
            window = declared
    out = _tokens(environ.get(MAX_OUTPUT)) or DEFAULT_MAX_OUTPUT
    compact_window = window
    auto = _tokens(environ.get(AUTO_WINDOW))
    if auto is not None:
        compact_window = min(window, max(auto, AUTO_COMPACT_MIN))
    effective = compact_window - min(out, OUTPUT_RESERVE_CAP)
    threshold = effective - SUMMARY_BUFFER
    try:
        pct = float(environ.get(PCT, ""))
    except ValueError:
        pct = 0.0
    if 0 < pct <= 100:
        threshold = min(math.floor(effective * pct / 100), threshold)
    return Compaction(window, threshold)


def env_problem(environ: Mapping[str, str], context: int) -> str | None:
    """Why Claude Code under ``environ`` would not compact in time for ``context``, or None."""
    model = environ.get("ANTHROPIC_MODEL")
    got = simulate(environ, model)
    want = target_threshold(context)
    who = f"model {model}" if model else "Claude's model names"
    if got.threshold > want:
        return (f"Claude Code ({who}) would compact at {got.threshold} tokens but the loaded "
                f"context is {context}: it overflows first")
    if got.threshold < want // 2:
        return (f"Claude Code ({who}) would compact at {got.threshold} tokens, far below "
                f"what the loaded context of {context} allows")
    return None
