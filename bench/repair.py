"""The tool-call repair filter's cost (issue 13): it sits on every streamed token.

1,000 ``TextDelta`` events (token-sized pieces of 1-6 characters) go through
``ToolCallRepair.feed`` and, in the same run and alternating, through a pass-through
``feed`` (one call, one list per event: what the filter's place costs with no filter).
Three replies: plain prose; a coding answer dense in ``<``, ``[`` and fences (the markers'
first characters, the slow path); prose with a Qwen3-Coder call printed in the middle.
Prints the median time per 1,000 events of each and the filter's extra cost.

    python bench/repair.py [--n 300]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))

from lmsd.protocol.pivot import Event, FunctionTool, TextDelta
from lmsd.protocol.repair import ToolCallRepair

TOOLS = tuple(FunctionTool(n, "", {"type": "object", "properties": {"command": {"type": "string"}},
                                   "required": ["command"]})
              for n in ("Bash", "Read", "Edit", "Write", "Glob", "Grep", "TodoWrite"))
PROSE = ("The function reads the configuration once and caches it, so the second call is "
         "cheap; the tests cover both paths and the error case. ")
CODE = ("Here is the fix:\n```python\nif a[i] < b[j] and x <= 3:\n    d[k] = [v for v in w]\n"
        "```\nand `List[int]` <b>stays</b> as [it](http://x) was. ")
CALL = "<function=Bash>\n<parameter=command>\nls -la src\n</parameter>\n</function>\n"


def pieces(text: str, n: int = 1000, seed: int = 1) -> list[TextDelta]:
    rng, out, i = random.Random(seed), [], 0
    while len(out) < n:
        step = rng.randint(1, 6)
        out.append(TextDelta("t", (text * (1 + (i + step) // len(text)))[i:i + step]))
        i += step
    return out


def passthrough(event: Event) -> list[Event]:
    return [event]


def once(events: list[TextDelta], make: Callable[[], Callable[[Event], list[Event]]]) -> float:
    feed = make()
    start = time.perf_counter()
    for e in events:
        feed(e)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    half = pieces(PROSE, 500)
    replies = {
        "prose": pieces(PROSE),
        "code": pieces(CODE),
        "prose + call": [*half, *(TextDelta("t", CALL[i:i + 4]) for i in range(0, len(CALL), 4)),
                         *pieces(PROSE, 1000 - 500 - len(CALL) // 4 - 1, seed=2)],
    }
    print(f"{'reply':<14} {'pass-through':>14} {'repair':>12} {'extra':>12} {'per event':>10}")
    for name, events in replies.items():
        base, filt = [], []
        for _ in range(args.n):
            base.append(once(events, lambda: passthrough))
            filt.append(once(events, lambda: ToolCallRepair(TOOLS).feed))
        b, f = statistics.median(base) * 1e6, statistics.median(filt) * 1e6
        scale = 1000 / len(events)
        print(f"{name:<14} {b * scale:>11.0f} us {f * scale:>9.0f} us {(f - b) * scale:>9.0f} us"
              f" {(f - b) * scale / 1000:>7.2f} us")


if __name__ == "__main__":
    main()
