"""Hostile requests, as raw HTTP: odd methods, ids, headers and bodies for every route.

Bodies start from valid requests of each front (small hand-written ones and the captured
Claude Code and Codex requests) with fields replaced by hostile values. Some values are
only spellable in JSON text (NaN, a lone surrogate escape, nesting past the parser's
limit): a marker string is put in the value and swapped in the dumped text."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from tests.support.fixtures import body as claude_body
from tests.support.fixtures import codex_request
from tests.support.fuzz import paths

# -- values ------------------------------------------------------------------------------


def mostly(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], *,
           percent: int = 80) -> st.SearchStrategy[Any]:
    """``common`` about ``percent``% of the time: most requests must get past the first
    checks to test what lies behind them."""
    return st.integers(0, 99).flatmap(lambda n: common if n < percent else rare)


#: Marker -> JSON text put in its place (with the quotes around the marker).
RAW = {
    "@@nan@@": "NaN", "@@inf@@": "Infinity", "@@-inf@@": "-Infinity",
    "@@bigexp@@": "1e999", "@@bigint@@": "9" * 5000, "@@negzero@@": "-0.0",
    "@@deep900@@": "[" * 900 + "]" * 900, "@@deep2000@@": "[" * 2000 + "]" * 2000,
    "@@deepobj@@": '{"a":' * 600 + "1" + "}" * 600,
}
#: Marker -> text inside a JSON string (the quotes stay).
IN_STRING = {"@@lone@@": "\\ud800", "@@lowlone@@": "x\\udfffy", "@@pair@@": "\\ud83d\\ude00",
             "@@halfpair@@": "\\ud83dx", "@@nul@@": "a\\u0000b"}

odd_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "\n", "a\nb", "\x00", "\r\n", "\u2028", "\ufeff", "..", "../..",
                     "%00", "{{x}}", "\x1b[31mred\x1b[0m", "ü" * 3, "🦙", "a" * 300,
                     "x" * 70_000, *IN_STRING]),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63, max_value=2**200),
    st.integers(max_value=-(2**63)), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 1, 2**31, 2**64, 1e308, -1e-308, 0.5]), odd_text,
    st.sampled_from(list(RAW)),
)
hostile = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=12,
)


def dump(value: Any) -> bytes:
    """JSON text, with the markers swapped for what only text can say."""
    text = json.dumps(value, ensure_ascii=False)
    for marker, raw in RAW.items():
        text = text.replace(json.dumps(marker), raw)
    for marker, raw in IN_STRING.items():
        text = text.replace(marker, raw)
    return text.encode("utf-8", "surrogatepass")


# -- valid requests of each front ------------------------------------------------------
# (no images: the emulator's model refuses them, and most requests should get through)

MESSAGES = {
    "model": "claude-sonnet-4-5", "max_tokens": 64, "stream": False,
    "system": [{"type": "text", "text": "be brief"}],
    "metadata": {"user_id": "user_abc_account__session_fuzz-1"},
    "tools": [{"name": "Bash", "description": "run", "input_schema": {
        "type": "object", "properties": {"command": {"type": "string"}}}}],
    "messages": [
        {"role": "user", "content": "list files"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"},
            {"type": "text", "text": "and now?", "cache_control": {"type": "ephemeral"}}]},
    ],
    "temperature": 0.5, "top_p": 0.9, "top_k": 10, "stop_sequences": ["STOP"],
    "tool_choice": {"type": "auto"}, "thinking": {"type": "enabled", "budget_tokens": 1024},
}
CHAT = {
    "model": "qwen/qwen3-coder-30b", "stream": False, "max_tokens": 32, "user": "fuzz-user",
    "temperature": 0.2, "stop": ["\n\n"], "tool_choice": "auto", "parallel_tool_calls": True,
    "stream_options": {"include_usage": True}, "prompt_cache_key": "fuzz-chat",
    "tools": [{"type": "function", "function": {"name": "bash", "description": "run",
               "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}}],
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "bash", "arguments": "{\"cmd\": \"ls\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "a.txt"},
    ],
}
RESPONSES = {
    "model": "some-local-model", "stream": False, "store": False, "instructions": "be brief",
    "prompt_cache_key": "fuzz-codex", "max_output_tokens": 64, "parallel_tool_calls": False,
    "reasoning": {"effort": "low", "summary": "auto"}, "tool_choice": "auto",
    "tools": [{"type": "function", "name": "shell", "description": "run", "strict": False,
               "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}],
    "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "x"}]},
    ],
}
CONFIG = {"model": "some/model", "allowed_tools": ["Bash", "Read"]}


def captured_codex() -> dict[str, Any]:
    return codex_request("resp-min-tools", 2)["body"]


def mutated(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """``base``, valid, or with one to three fields replaced, removed or added."""
    where = [p for p in paths(base, width=4) if p]

    @st.composite
    def build(draw: Any) -> bytes:
        doc = copy.deepcopy(base)
        for _ in range(draw(st.integers(0, 3))):
            path = draw(st.sampled_from(where))
            target = doc
            try:
                for key in path[:-1]:
                    target = target[key]
                action = draw(st.sampled_from(["replace", "replace", "drop", "add"]))
                if action == "drop":
                    del target[path[-1]]
                elif action == "add" and isinstance(target, dict):
                    target[draw(odd_text)] = draw(hostile)
                else:
                    target[path[-1]] = draw(hostile)
            except (KeyError, IndexError, TypeError):
                continue  # an earlier change removed or replaced the way there
        return dump(doc)

    return build()


raw_bodies = st.one_of(
    st.just(b""), st.binary(max_size=200), st.sampled_from([
        b"{", b"[]", b"null", b"0", b'"x"', b"{}", b"\xef\xbb\xbf{}", b'{"a":1,"a":2}',
        b"\xff\xfe{\x00}\x00", b'{"model":"\xed\xa0\x80"}', b'{"messages":[' * 3000,
        b"[" * 100_000, b'{"x":' + b"1" * 10_000 + b"}", b"NaN", b"1e999",
        b"\x00" * 64, '{"model":"é"}'.encode("utf-16"),
    ]),
    hostile.map(dump),
)


def body_for(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    return mostly(mutated(base), raw_bodies, percent=85)


# -- ids, paths, methods, headers ----------------------------------------------------------

good_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True)
#: Session ids as they reach the server: some valid, some with a trailing newline (the
#: issue's finding 3), control characters, unicode, too long, path tricks.
odd_ids = st.one_of(
    good_ids,
    good_ids.map(lambda s: s + "\n"),
    st.sampled_from(["", ".", "..", "a/../../b", "a%2Fb", "a%00b", "a\x00b", "a\rb", "a b",
                     "a\tb", "ü", "\ud800", "🦙", "-a", ":", "a" * 129, "a" * 5000,
                     "%ED%A0%80", "%0A", "a%0A", "..%2F..%2Fadmin", "//evil.example", "?x=1",
                     "#frag", "%", "%zz", "\\", "a;b", "CON", "a" * 128]),
    st.text(max_size=40),
)


def path_segment(value: str) -> str:
    """``value`` in a request target: percent-encoded as a client would, keeping ``%``
    sequences it already has (so ``%2F`` and ``%ED%A0%80`` arrive as written)."""
    return quote(value, safe="%:@!$&'()*+,;=-._~", errors="surrogatepass")


methods = st.one_of(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE",
                     "PROPFIND", "CONNECT"]),
    st.from_regex(r"[A-Z]{1,12}", fullmatch=True),
)
SESSION_HEADERS = ["x-claude-code-session-id", "x-claude-code-agent-id", "session-id",
                   "x-session-id", "x-session-affinity", "x-codex-turn-metadata",
                   "anthropic-version", "anthropic-beta", "authorization", "x-api-key",
                   "content-encoding", "origin", "sec-fetch-site", "accept", "user-agent"]
header_values = st.one_of(
    odd_ids.map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.binary(max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b),
    st.sampled_from([b"x" * 12_000, b"\xed\xa0\x80", b"gzip", b"identity", b"br, gzip",
                     b"null", b"[]", b'{"request_kind":"compaction"}', b'{"request_kind":1}',
                     b"[" * 6000, b'{"a":' * 3000, b"Bearer ", b"https://evil.example",
                     b"cross-site", b"2023-06-01", b"\x00", b"\x7f", b"\xff"]),
)
content_types = mostly(st.just("application/json"), st.sampled_from([
    "application/json; charset=utf-8",
    "application/json; charset=utf-16", "text/plain", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "", "application/json\x00", "APPLICATION/JSON",
    None,
]), percent=85)


@st.composite
def headers(draw: Any, *, json_body: bool = True) -> list[tuple[str, bytes | str]]:
    out: list[tuple[str, bytes | str]] = []
    if json_body:
        ctype = draw(content_types)
        if ctype is not None:
            out.append(("Content-Type", ctype))
    for _ in range(draw(mostly(st.just(0), st.integers(1, 3), percent=50))):
        out.append((draw(st.sampled_from(SESSION_HEADERS)), draw(header_values)))
    return out


QUERY_NAMES = ["limit", "after_id", "before_id", "replay", "session", "type", "token", "x"]
query_values = st.one_of(
    st.sampled_from(["5", "0", "-1", "1000", "1001", "abc", "%C2%B2", "%D9%A3", "9" * 5000,
                     "1e3", " 5", "5 ", "%00", "%ED%A0%80", "%0A", "", "%", "%zz",
                     "request,session", "claude-sonnet-4-5"]),
    st.text(max_size=20).map(lambda t: quote(t, errors="surrogatepass")),
)
query_strings = st.one_of(
    st.just(""),
    st.lists(st.tuples(st.sampled_from(QUERY_NAMES), query_values), min_size=1, max_size=3)
    .map(lambda pairs: "?" + "&".join(f"{k}={v}" for k, v in pairs)),
    st.sampled_from(["?" + "a=1&" * 500, "?%ED%A0%80=1", "?&&&", "?=", "?limit"]),
)


def ws_upgrade() -> list[tuple[str, str]]:
    return [("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]


__all__ = [
    "CHAT",
    "CONFIG",
    "MESSAGES",
    "RESPONSES",
    "body_for",
    "captured_codex",
    "claude_body",
    "headers",
    "methods",
    "odd_ids",
    "path_segment",
    "query_strings",
]
