"""What bench/day.py makes of a run: each mode's summary (prefilled over new, TTFT after
a restart over cold, lmsd's request.end lines) and the tables it prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.day_engine import CONFIGS


def summarize(config: str, mode: str, rows: list[dict[str, Any]], lmsd_log: Path
              ) -> dict[str, Any]:
    ran = [r for r in rows if "not_applicable" not in r]
    prefilled = sum(r["engine_prefilled"] for r in ran)
    new = sum(r["new_event"] + r["new_main"] for r in ran)
    cold = _ttft({"rows": ran}, "N")
    ends = []
    if lmsd_log.exists():
        for line in lmsd_log.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == "request.end":
                ends.append({k: record.get(k) for k in (
                    "id", "agent", "session", "ttft_ms", "upstream_ms", "input_tokens",
                    "prefilled_tokens", "cached_tokens")})
    return {"config": config, "mode": mode, "rows": rows, "prefilled": prefilled, "new": new,
            "prefilled_over_new": round(prefilled / new, 2), "cold_ttft_s": cold,
            "engine_restart_ttft_ratio": round(_ttft({"rows": ran}, "N+4") / cold, 3),
            "lmsd_restart_ttft_ratio": round(_ttft({"rows": ran}, "N+5") / cold, 3),
            "lmsd_request_end": ends}


def table(results: list[dict[str, Any]], config: str) -> str:
    """Markdown: per step, each mode's engine prefill (event + next main turn) and the
    next main turn's TTFT."""
    mine = [r for r in results if r["config"] == config]
    head = "| step | new (event + main) | " + " | ".join(
        f"{r['mode']}: prefilled event + main, TTFT" for r in mine) + " |"
    lines = [head, "|---|---|" + "---|" * len(mine)]
    for i, row in enumerate(mine[0]["rows"]):
        if "not_applicable" in row:
            lines.append(f"| {row['step']} | {row['not_applicable']} |" + " - |" * len(mine))
            continue
        cells = []
        for r in mine:
            x = r["rows"][i]
            own = x["main"]["prefilled"]
            cells.append(f"{x['event_prefilled']} + {own}, {x['main']['ttft_s']:.2f} s")
        lines.append(f"| {row['step']} ({row['main']['name']}) | {row['new_event']} + "
                     f"{row['new_main']} | " + " | ".join(cells) + " |")
    lines.append("| **whole trace: prefilled / new** | " + str(mine[0]["new"]) + " | " +
                 " | ".join(f"{r['prefilled']} / {r['new']} = **{r['prefilled_over_new']}**"
                            for r in mine) + " |")
    lines.append("| **TTFT after restart / cold (N)** | | " + " | ".join(
        f"engine {r['engine_restart_ttft_ratio']:.2f}, lmsd {r['lmsd_restart_ttft_ratio']:.2f}"
        f" (cold {r['cold_ttft_s']:.2f} s)" for r in mine) + " |")
    # A warm turn at 12k costs more than 0.2 x a cold N (7.7k) even with a perfect cache;
    # a cold turn of that size: direct's N+4 (all re-prefilled after the engine restart).
    direct = next((r for r in mine if r["mode"] == "direct"), None)
    if direct is not None:
        cold4 = _ttft(direct, "N+4")
        lines.append(f"| TTFT after restart / cold N+4 (direct, {cold4:.2f} s) | | " +
                     " | ".join(f"engine {_ttft(r, 'N+4') / cold4:.2f}, lmsd "
                                f"{_ttft(r, 'N+5') / cold4:.2f}" for r in mine) + " |")
    lines.append("| load average (1 min), start / end | | " + " | ".join(
        "{:.1f} / {:.1f}".format(*r["load1_start_end"]) for r in mine) + " |")
    return "\n".join(lines)


def _ttft(result: dict[str, Any], name: str) -> float:
    return next(x["main"]["ttft_s"] for x in result["rows"]
                if x.get("main") and x["main"]["name"] == name)


def print_tables(report: dict[str, Any]) -> None:
    configs = dict.fromkeys(r["config"] for r in report["results"])
    for config in configs:
        engine = CONFIGS.get(config)
        flags = " ".join(engine.args(report["cache_ram"], Path("DIR"))) if engine else "?"
        print(f"\n{config} (llama-server {flags}); cells: tokens prefilled by "
              "the engine during the event + by the next main turn, that turn's TTFT\n")
        print(table(report["results"], config))
