"""The day of bench/day_switch.py: one Claude Code session that switches models with
``/model`` and back, as a list of steps. Nothing here knows the box that serves it (the
LM Studio emulator today, llama-server processes lmsd starts later): a step is a request
as Claude Code sends it (bench/day_trace.py builds them from captured requests), or a
pause while the user reads.

The day (``build_day``), session 1's history growing by one Bash call (~1k tokens) a turn:
- on model A: turn 1 with the title request (haiku-class) 80 ms before it, as captured;
  more turns; an Explore subagent (haiku-class) before one; session 2's first turn (a
  second terminal, on A) before another;
- ``/model B``: a few turns on B, the same session (its whole history goes to B);
- ``/model A``: the first turn on A again, the user idle for ``idle`` seconds (lmsd may
  re-warm A's conversations meanwhile), then the rest: session 1's turns and session 2's
  second turn.
Haiku-class requests go to whatever model lmsd maps them to (by default the first loaded
model: no swap for a side request).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from bench.day_trace import (
    EXPLORE_PROMPT,
    SESSION_1,
    SESSION_2,
    SIDE_MODEL,
    SUBAGENT_ID,
    SUBAGENT_TOOLS,
    TOOL_ORDER,
    Req,
    _captured,
    _cut_tools,
    _grow,
    _headers,
    _in_session,
)

MODEL_A = "qwen/qwen3-coder-30b"  # the emulator's loaded model (the user's morning load)
MODEL_B = "google/gemma-3-12b"  # downloaded, not loaded


@dataclass
class Step:
    """One thing the user's Claude Code does: send ``req`` (with ``beside`` 80 ms before
    it), or nothing for ``idle`` seconds."""

    name: str
    req: Req | None = None
    main: bool = False  # session 1's main turn: its TTFT is in the report
    beside: Req | None = None
    idle: float = 0.0
    mark: str = ""  # "switch" on the first turn on another model, "back" on A's return

    @property
    def model(self) -> str:
        return self.req.body["model"] if self.req is not None else ""


def build_day(a: str = MODEL_A, b: str = MODEL_B, *, on_a: int = 5, on_b: int = 3,
              back: int = 3, idle: float = 10.0, tools: int = len(TOOL_ORDER)
              ) -> list[Step]:
    """The day's steps: ``on_a`` main turns on ``a`` (the subagent and session 2 come
    before its last two), ``on_b`` on ``b``, ``back`` on ``a`` again (the idle pause after
    the first of them, session 2's second turn after the second)."""
    if on_a < 4 or on_b < 1 or back < 2:
        raise ValueError("need on_a >= 4, on_b >= 1, back >= 2")
    captured = _captured()
    title_c, first_c, after_c = captured[1], captured[2], captured[3]
    main_body = _cut_tools(_in_session(after_c["body"], SESSION_1, a), tools)
    headers = _headers(after_c, SESSION_1)

    def turn(k: int, model: str) -> Req:
        body = _grow(main_body, k)
        body["model"] = model
        return Req(f"{'A' if model == a else 'B'}{k + 1}", body, headers)

    title = Req("title", _in_session(title_c["body"], SESSION_1, SIDE_MODEL),
                _headers(title_c, SESSION_1))
    by_name = {t["name"]: t for t in after_c["body"]["tools"]}
    subagent = Req("subagent", {
        "model": SIDE_MODEL, "max_tokens": 16, "stream": True,
        "system": [*copy.deepcopy(main_body["system"][:2]),
                   {"type": "text", "text": EXPLORE_PROMPT}],
        "tools": [by_name[n] for n in SUBAGENT_TOOLS if n in by_name],
        "messages": [{"role": "user", "content": [{"type": "text", "text": (
            "Find where lmsd derives a request's session key and list every caller.")}]}],
        "metadata": main_body["metadata"]}, _headers(after_c, SESSION_1, SUBAGENT_ID))
    s2_body = _cut_tools(_in_session(first_c["body"], SESSION_2, a), tools)
    s2_body["messages"][0]["content"][-1]["text"] = (
        "list the python files under src/ and count their lines")
    s2_headers = _headers(first_c, SESSION_2)
    session2 = [Req("S2-1", s2_body, s2_headers), Req("S2-2", _grow(s2_body, 1), s2_headers)]

    steps = [Step("A1", turn(0, a), main=True, beside=title)]
    for k in range(1, on_a):
        if k == on_a - 2:
            steps.append(Step("subagent", subagent))
        if k == on_a - 1:
            steps.append(Step("S2-1", session2[0]))
        steps.append(Step(f"A{k + 1}", turn(k, a), main=True))
    for k in range(on_a, on_a + on_b):
        steps.append(Step(f"B{k + 1}", turn(k, b), main=True,
                          mark="switch" if k == on_a else ""))
    first_back = on_a + on_b
    steps.append(Step(f"A{first_back + 1}", turn(first_back, a), main=True, mark="back"))
    steps.append(Step("idle", idle=idle))
    for k in range(first_back + 1, first_back + back):
        steps.append(Step(f"A{k + 1}", turn(k, a), main=True))
        if k == first_back + 1:
            steps.append(Step("S2-2", session2[1]))
    return steps
