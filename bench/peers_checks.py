"""The correctness checks of bench/peers.py: each system's answers through the anthropic
SDK's stream accumulator (tool ids, usage, thinking blocks, stop reasons, a system
message)."""

from __future__ import annotations

import re
from typing import Any

from bench.peers_systems import API_KEY
from bench.peers_traffic import (
    LENGTH_MARK,
    SYSTEM_MARK,
    SYSTEM_SEEN,
    THINK_CALL,
    THINK_MARK,
    THINK_TEXT,
    with_marker,
)

# -- correctness ---------------------------------------------------------------------------------


def sdk_final(base_url: str, body: dict[str, Any], beta: str) -> Any:
    import anthropic

    client = anthropic.Anthropic(base_url=base_url, api_key=API_KEY, max_retries=0,
                                 timeout=30)
    known = ("model", "messages", "system", "tools", "metadata", "max_tokens", "thinking")
    kwargs = {k: body[k] for k in known if k in body}
    extra = {k: v for k, v in body.items() if k not in known and k != "stream"}
    try:
        with client.messages.stream(**kwargs, extra_body=extra,
                                    extra_headers={"anthropic-beta": beta}) as stream:
            seen = {event.type for event in stream}
            final = stream.get_final_message()
    finally:
        client.close()
    if "message_stop" not in seen:
        raise RuntimeError(f"stream ended without message_stop (events: {sorted(seen)})")
    return final


def short_error(exc: Exception) -> str:
    """The innermost error message of an exception (peers nest upstream errors)."""
    text = str(exc)
    inner = re.findall(r'\\?"message\\?":\s*\\?"(.+?)\\?"', text)
    status = getattr(exc, "status_code", None)
    prefix = f"HTTP {status}: " if status else f"{type(exc).__name__}: "
    return prefix + (inner[-1] if inner else text).replace("\\'", "'")[:200]


def check(base_url: str, bodies: list[dict[str, Any]], beta: str) -> dict[str, str]:
    """Run the three SDK checks; each column is 'ok' or what went wrong."""
    cases = {"think": with_marker(bodies[0], THINK_MARK), "loop": bodies[1],
             "length": with_marker(bodies[0], LENGTH_MARK),
             "system": with_marker(bodies[0], SYSTEM_MARK, "system")}
    finals: dict[str, Any] = {}
    failures: dict[str, list[str]] = {}
    for name, body in cases.items():
        try:
            finals[name] = sdk_final(base_url, body, beta)
        except Exception as exc:
            failures.setdefault(short_error(exc), []).append(name)
    out = {"sdk": "ok" if not failures else "FAIL " + "; ".join(
        f"{'+'.join(names)}: {why}" for why, names in failures.items())}
    think = finals.get("think")
    if think is None:
        out["ids"] = out["thinking"] = "n/a"
    else:
        uses = [b for b in think.content if b.type == "tool_use"]
        got = [(b.id, b.input) for b in uses]
        out["ids"] = ("ok" if got == [(THINK_CALL.call_id, THINK_CALL.arguments)]
                      else f"FAIL {got!r:.120}")
        thoughts = [b.thinking for b in think.content if b.type == "thinking"]
        out["thinking"] = ("ok" if thoughts and thoughts[0] == THINK_TEXT
                           else f"FAIL blocks={[b.type for b in think.content]}"
                           f" thinking={thoughts!r:.60}")
    usage = {name: f.usage.input_tokens for name, f in finals.items()}
    out["usage"] = ("n/a" if not usage else "ok" if all(v and v > 0 for v in usage.values())
                    else f"FAIL input_tokens={usage}")
    system = finals.get("system")
    if system is None:
        out["system msg"] = "n/a"
    else:
        said = "".join(b.text for b in system.content if b.type == "text")
        out["system msg"] = "ok" if said == SYSTEM_SEEN else "FAIL dropped (model never saw it)"
    want = {"think": "tool_use", "loop": "end_turn", "length": "max_tokens"}
    stops = {name: f.stop_reason for name, f in finals.items() if name in want}
    wrong = {n: s for n, s in stops.items() if s != want[n]}
    out["stops"] = "n/a" if not stops else "ok" if not wrong else f"FAIL {wrong}"
    return out
