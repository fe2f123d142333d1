"""What bench/day_switch.py makes of a day: each mode's figures (loads, tokens prefilled
against a perfect cache, failed requests, TTFT of the main turns) and the table it
prints. Pure: the box that served the day hands in what its engine saw (``Engine``)."""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.common import percentile
from lmsd.protocol.warmup import common_prefix


@dataclass
class Turn:
    """One request of the day as the user saw it."""

    name: str
    model: str
    main: bool
    mark: str
    ttft: float | None  # seconds from the first send to the first token; None: gave up
    attempts: int  # sends until it answered (1: at once)
    errors: list[str] = field(default_factory=list)  # why the failed attempts failed
    start: float = 0.0  # wall clock (time.time()) of the first send
    end: float = 0.0  # ... and of the answer's end
    input_tokens: int | None = None  # the answer's usage: tokens not read from the cache
    prefilled: int | None = None  # what the engine's log says it prefilled for it


@dataclass
class Served:
    """lmsd's URL on the box, and what the engine did (asked once, after the day)."""

    url: str
    engine: Callable[[], Engine]
    settle: Callable[[], Awaitable[None]] | None = None  # until the engine is quiet


@dataclass
class Engine:
    """What the engine did over the day."""

    loads: list[dict[str, Any]]  # {"model", "context", "how", "at"} in order
    prefilled: int  # tokens it prefilled, warm-ups included
    prefilled_warmups: int  # of which for lmsd's warm-ups
    new: int  # what a perfect cache (per model, never forgetting) would have prefilled
    peak_bytes: int  # the most memory its loaded models took at once
    rejected: int  # generation requests it refused (a prompt too long for the context)
    #: (wall clock, model, tokens) of each prefill the engine logged, when its log says
    #: (llama-server's ``prompt eval time`` lines): the turns' own figures come from them
    evals: list[tuple[float, str, int]] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)  # lmsd's events, counted by type


def new_tokens(prompts: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
    """Each prompt's tokens a perfect cache would prefill: all but the longest prefix it
    shares with an earlier prompt on the same model (at least one: an engine always
    evaluates the last token, as llama.cpp does)."""
    seen: dict[str, list[Sequence[Any]]] = {}
    out = []
    for model, tokens in prompts:
        shared = max((common_prefix(tokens, s) for s in seen.get(model, [])), default=0)
        out.append(len(tokens) - min(shared, max(len(tokens) - 1, 0)))
        seen.setdefault(model, []).append(tokens)
    return out


def attribute(turns: list[Turn], evals: Sequence[tuple[float, str, int]],
              grace: float = 1.0) -> int:
    """Set each turn's ``prefilled`` from the engine's prefills: a prefill logged while a
    turn was open (or up to ``grace`` s after its end: the engine prints its timings as
    the answer ends, lmsd logs them a moment later) is that turn's; of several open ones,
    the one that ended nearest to it (the title ends before the turn it runs beside).
    Returns what no turn took (lmsd's own work: warm-ups while the user is idle)."""
    for t in turns:
        t.prefilled = 0
    outside = 0
    for at, _model, tokens in evals:
        open_ = [t for t in turns if t.start <= at <= t.end + grace]
        if not open_:
            outside += tokens
            continue
        turn = min(open_, key=lambda t: abs(at - t.end))
        turn.prefilled = (turn.prefilled or 0) + tokens
    return outside


def summarize(mode: str, turns: list[Turn], engine: Engine, wall: float,
              budget_bytes: int) -> dict[str, Any]:
    """One mode's figures (what the JSON holds and the table shows)."""
    warmups = engine.prefilled_warmups
    if engine.evals:
        warmups = attribute(turns, engine.evals)
    main = [t for t in turns if t.main and t.ttft is not None]
    ttfts = [t.ttft for t in main if t.ttft is not None]
    back = next((t for t in turns if t.mark == "back"), None)
    switch = next((t for t in turns if t.mark == "switch"), None)
    after_back = _after(turns, "back")
    return {
        "mode": mode, "wall_s": round(wall, 2),
        "loads": engine.loads, "load_count": len(engine.loads),
        "prefilled": engine.prefilled, "prefilled_warmups": warmups,
        "new": engine.new,
        "prefilled_over_new": round(engine.prefilled / engine.new, 2) if engine.new else None,
        "failed_attempts": sum(t.attempts - 1 for t in turns if t.ttft is not None)
        + sum(t.attempts for t in turns if t.ttft is None),
        "gave_up": [t.name for t in turns if t.ttft is None],
        "engine_rejected": engine.rejected,
        "main_ttft_p50_s": round(statistics.median(ttfts), 3) if ttfts else None,
        "main_ttft_p99_s": round(percentile(ttfts, 0.99), 3) if ttfts else None,
        "main_ttft_sum_s": round(sum(ttfts), 3),
        "switch_ttft_s": _s(switch), "back_ttft_s": _s(back),
        "after_back_ttft_s": _s(after_back),
        "back_prefilled": None if back is None else back.prefilled,
        "after_back_prefilled": None if after_back is None else after_back.prefilled,
        "events": engine.events,
        "peak_bytes": engine.peak_bytes, "budget_bytes": budget_bytes,
        "over_budget": bool(budget_bytes) and engine.peak_bytes > budget_bytes,
        "turns": [asdict(t) for t in turns],
    }


def _s(turn: Turn | None) -> float | None:
    return None if turn is None or turn.ttft is None else round(turn.ttft, 3)


def _after(turns: list[Turn], mark: str) -> Turn | None:
    """The next main turn after the one marked ``mark``."""
    at = next((i for i, t in enumerate(turns) if t.mark == mark), None)
    if at is None:
        return None
    return next((t for t in turns[at + 1:] if t.main), None)


def _gb(n: int) -> str:
    """GB, or MB under 1 GB (the tiny test models)."""
    return f"{n / 1e9:.0f} GB" if n >= 1e9 or not n else f"{n / 1e6:.0f} MB"


def table(results: list[dict[str, Any]], titles: dict[str, str]) -> str:
    """Markdown: one column per mode."""
    rows: list[tuple[str, Any]] = [
        ("loads (model@context, how)", lambda r: f"{r['load_count']}: " + ", ".join(
            f"{x['model'].split('/')[-1]}@{x['context']} {x['how']}" for x in r["loads"])),
        ("peak memory loaded (budget)", lambda r: f"{_gb(r['peak_bytes'])}"
         f"{' OVER' if r['over_budget'] else ''} ({_gb(r['budget_bytes'])})"),
        ("tokens prefilled (warm-ups)", lambda r: f"{r['prefilled']} "
         f"({r['prefilled_warmups']})"),
        ("tokens new (a perfect cache)", lambda r: str(r["new"])),
        ("prefilled / new", lambda r: f"**{r['prefilled_over_new']}**"),
        ("failed sends (engine refused)", lambda r: f"{r['failed_attempts']} "
         f"({r['engine_rejected']})" + (f", gave up: {', '.join(r['gave_up'])}"
                                        if r["gave_up"] else "")),
        ("main TTFT p50 / p99", lambda r: f"{r['main_ttft_p50_s']:.2f} s / "
         f"{r['main_ttft_p99_s']:.2f} s"),
        ("first turn on B (switch)", lambda r: _cell(r["switch_ttft_s"])),
        ("first turn on A again (back)", lambda r: _cell(r["back_ttft_s"])),
        ("next A turn, after the idle pause", lambda r: _cell(r["after_back_ttft_s"])),
        ("main TTFT, sum over the day", lambda r: f"{r['main_ttft_sum_s']:.2f} s"),
        ("wall time", lambda r: f"{r['wall_s']:.1f} s"),
    ]
    if any(r.get("back_prefilled") is not None for r in results):  # the engine's log says
        rows[4:4] = [
            ("prefilled: turn back / the next", lambda r: f"{r.get('back_prefilled')} / "
             f"{r.get('after_back_prefilled')}")]
        rows.append(("engine starts, stops; slot saves, restores", lambda r: ", ".join(
            str(r.get("events", {}).get(k, 0)) for k in (
                "engine.started", "model.unload")) + "; " + ", ".join(
            str(r.get("events", {}).get(k, 0)) for k in ("cache.saved", "cache.restored"))))
    head = "| | " + " | ".join(titles.get(r["mode"], r["mode"]) for r in results) + " |"
    lines = [head, "|---|" + "---|" * len(results)]
    lines += [f"| {label} | " + " | ".join(cell(r) for r in results) + " |"
              for label, cell in rows]
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "failed" if value is None else f"{value:.2f} s"


def turns_table(results: list[dict[str, Any]], titles: dict[str, str]) -> str:
    """Markdown: each request's TTFT (attempts) per mode."""
    head = "| request | " + " | ".join(titles.get(r["mode"], r["mode"]) for r in results) + " |"
    lines = [head, "|---|" + "---|" * len(results)]
    for turn in results[0]["turns"]:  # by name: the title may end before or after A1
        label = turn["name"] + (f" ({turn['mark']})" if turn["mark"] else "")
        cells = []
        for r in results:
            t = next(x for x in r["turns"] if x["name"] == turn["name"])
            cells.append(_cell(t["ttft"]) + (f" ({t['attempts']} sends)"
                                             if t["attempts"] > 1 else "")
                         + ("" if t.get("prefilled") is None else
                            f", {t['prefilled']} prefilled"))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(results: list[dict[str, Any]], base: str = "lmsd") -> list[str]:
    """Each other mode against ``base``: prefilled, the sum of main TTFTs, the turn back,
    wall time."""
    by = {r["mode"]: r for r in results}
    if base not in by:
        return []
    a = by[base]
    out = []
    for mode, r in by.items():
        if mode == base:
            continue
        parts = [f"prefilled {_ratio(r['prefilled'], a['prefilled'])}",
                 f"main TTFT sum {_ratio(r['main_ttft_sum_s'], a['main_ttft_sum_s'])}",
                 f"turn back {_ratio(r['back_ttft_s'], a['back_ttft_s'])}",
                 f"switch {_ratio(r['switch_ttft_s'], a['switch_ttft_s'])}",
                 f"wall {_ratio(r['wall_s'], a['wall_s'])}"]
        out.append(f"{mode} / {base}: " + ", ".join(parts))
    return out


def _ratio(x: float | None, y: float | None) -> str:
    return "n/a" if x is None or not y else f"{x / y:.2f}x"
