"""The tables bench/peers.py prints: times and overheads per request, then per system
its overhead, CPU and memory as ratios to lmsd, and the SDK checks."""

from __future__ import annotations

from pathlib import Path

from bench.common import summary
from bench.peers_systems import versions
from bench.peers_traffic import System


def fmt_ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}x"


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def report(systems: list[System], failed: dict[str, str], n: int,
           emu_cpu: float, extra_checks: dict[str, dict[str, str]]) -> None:
    by_name = {s.name: s for s in systems}
    requests = ("req 1 (Bash call)", "req 2 (tool loop)")
    print(f"\npeers: {versions()}; load average at the end: "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"{n} alternating runs of each request per system; times in ms; overhead = "
          "median minus the matching direct call's median\n")
    print("| system | request | TTFT p50 | TTFT p99 | total p50 | total p99 "
          "| +TTFT p50 | +total p50 |")
    print("|---|---|---|---|---|---|---|---|")
    medians: dict[tuple[str, int], tuple[float, float]] = {}
    for system in systems:
        for which, label in enumerate(requests):
            runs = system.samples[which]
            if not runs:
                print(f"| {system.name} | {label} | - | - | - | - | - | - |")
                continue
            t50, t99 = summary([r[0] for r in runs])
            o50, o99 = summary([r[1] for r in runs])
            medians[system.name, which] = (t50, o50)
            over = "| | |"
            floor = medians.get((system.floor, which)) if system.floor else None
            if floor:
                over = f"| +{t50 - floor[0]:.2f} | +{o50 - floor[1]:.2f} |"
            print(f"| {system.name} | {label} | {t50:.2f} | {t99:.2f} | {o50:.2f} | "
                  f"{o99:.2f} {over}")

    def overhead(system: System | None, part: int) -> float | None:
        """Mean over both requests of (median - floor median); part 0 TTFT, 1 total."""
        if system is None:
            return None
        diffs = []
        for which in (0, 1):
            mine, floor = medians.get((system.name, which)), medians.get(
                (system.floor or "", which))
            if mine is None or floor is None:
                return None
            diffs.append(mine[part] - floor[part])
        return sum(diffs) / len(diffs)

    lmsd = by_name.get("lmsd")
    base = (overhead(lmsd, 0), overhead(lmsd, 1), lmsd and lmsd.cpu, lmsd and lmsd.rss)
    print("\nper system: overhead (mean of both requests), CPU seconds per 100 requests "
          "and peak RSS (VmHWM) of its processes, each also as a ratio to lmsd; then the "
          "anthropic SDK checks\n")
    print("| system | +TTFT ms | x lmsd | +total ms | x lmsd | CPU s/100 req | x lmsd "
          "| peak RSS MiB | x lmsd | SDK stream | tool ids | usage | thinking "
          "| stop reasons | system msg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for system in systems:
        if system.floor is None:
            continue
        mine = (overhead(system, 0), overhead(system, 1), system.cpu, system.rss)
        cells = []
        for value, ref, spec in zip(mine, base, (".2f", ".2f", ".2f", ".0f"), strict=True):
            cells += [fmt(value, spec), fmt_ratio(value, ref)]
        cells += [system.checks.get(k, "-").split(" ")[0] for k in
                  ("sdk", "ids", "usage", "thinking", "stops", "system msg")]
        print(f"| {system.name} | " + " | ".join(cells) + " |")
    print(f"\nemulator (shared upstream): {emu_cpu:.2f} CPU s per 100 requests it served")
    for system in systems:
        for key, value in system.checks.items():
            if value not in ("ok", "n/a"):
                print(f"  {system.name} {key}: {value}")
        if system.errors:
            print(f"  {system.name}: {len(system.errors)} failed requests, first: "
                  f"{system.errors[0][:300]}")
    for name, checks in extra_checks.items():
        print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in checks.items()))
    for name, why in failed.items():
        print(f"  {name}: NOT RUN - {why}")
