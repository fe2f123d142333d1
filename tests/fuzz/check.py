"""What every answer to a hostile request must be: no 5xx (the upstream is healthy, so
nothing but the request itself is at play), an error in the dialect of the route's
clients with a message, and no traceback in the log."""

from __future__ import annotations

import json
import os
import re
from urllib.parse import unquote

import hypothesis

from tests.fuzz.live import Live, Reply, request

#: The OpenAI fronts' routes (as the server sees the path: percent-decoded).
OPENAI_ROUTE = re.compile(r"(/session/[^/]*)?/v1/(chat/completions|responses)")
#: Examples per test; CI runs the fixed set hypothesis derives from each test (``ci``
#: profile, tests/conftest.py), so the count is what bounds the stage.
SCALE = float(os.environ.get("LMSD_FUZZ_SCALE", "1"))


def examples(n: int) -> int:
    return max(1, int(n * SCALE))


def dialect_of(port: str, path: str) -> str:
    if port == "admin":
        return "anthropic"
    bare = unquote(path.split("?", 1)[0], errors="replace")
    return "openai" if OPENAI_ROUTE.fullmatch(bare) else "anthropic"


def check_reply(reply: Reply, *, port: str, path: str, method: str, what: str) -> None:
    assert reply.status < 500, (reply.status, reply.body[:2000], what)
    from_app = "request-id" in reply.headers  # else hypercorn refused it as bad HTTP
    if reply.status < 400 or not from_app or method == "HEAD":
        return
    try:
        body = json.loads(reply.body)
    except ValueError:
        raise AssertionError((what, "error body is not JSON", reply.status,
                              reply.body[:500])) from None
    if dialect_of(port, path) == "openai":
        error = body.get("error")
        assert isinstance(error, dict) and "type" not in body, (what, body)
    else:
        assert body.get("type") == "error" and isinstance(body.get("error"), dict), (what, body)
        error = body["error"]
    assert isinstance(error.get("message"), str) and error["message"].strip(), (what, body)
    assert isinstance(error.get("type"), str) and error["type"], (what, body)


def condensed(text: str) -> str:
    """A traceback as its first line, lmsd's own frames (once each) and its last line."""
    lines = text.strip().splitlines()
    ours = list(dict.fromkeys(ln.strip() for ln in lines if "/lmsd/" in ln))
    return "\n".join([lines[0][:300], *ours[:30], lines[-1][:500]])


def exchange(live: Live, port: str, method: str, target: str | bytes,
             headers: list, body: bytes = b"") -> Reply:
    """Send one request; check its answer and that the log has no traceback; reset the
    upstream's health so that the next example is a request alone too."""
    port_no = getattr(live, port)[1]
    raw = request(method, target, headers=headers, body=body, port=port_no)
    path = target if isinstance(target, str) else target.decode("latin-1")
    what = raw if len(raw) < 1500 else raw[:700] + b" ... " + raw[-700:]
    try:
        reply = live.send(port, raw)
    finally:
        tracebacks = live.catch.take()
        live.reset_health()
    assert not tracebacks, (reply.status, [condensed(t) for t in tracebacks][:3], what)
    check_reply(reply, port=port, path=path, method=method, what=what)
    if hypothesis.currently_in_test_context():  # --hypothesis-show-statistics: the mix
        hypothesis.event(f"{port} {reply.status}")
    return reply
