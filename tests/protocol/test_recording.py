"""The recorded exchange's format, its redaction and the comparison of client streams."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmsd.protocol import recording as fmt
from lmsd.protocol.stream_diff import diff_streams


def test_only_allow_listed_headers_are_kept_and_never_a_secret():
    kept = fmt.allowed_headers([
        ("Authorization", "Bearer sk-1"), ("x-api-key", "sk-ant-2"), ("Cookie", "a=b"),
        ("Anthropic-Version", "2023-06-01"), ("X-Claude-Code-Session-Id", "s1"),
        ("x-goog-api-key", "k"), ("proxy-authorization", "p"), ("X-Whatever", "w")])
    assert kept == {"anthropic-version": "2023-06-01", "x-claude-code-session-id": "s1"}


def test_a_body_keeps_its_conversation_and_loses_key_like_fields():
    body = {"model": "m", "max_tokens": 5, "api_key": "sk-secret",
            "metadata": {"user_token": "t0k", "user_id": "u"},
            "messages": [{"role": "user", "content": "my password is in here"}]}
    redacted = fmt.redact(body)
    assert redacted["api_key"] == redacted["metadata"]["user_token"] == fmt.MASK
    assert redacted["max_tokens"] == 5 and redacted["metadata"]["user_id"] == "u"
    assert redacted["messages"] == body["messages"]
    assert "sk-secret" not in json.dumps(redacted)


def test_a_new_exchange_is_redacted_and_versioned():
    exchange = fmt.new_exchange(recorded_at=1.23456, method="POST", path="/v1/messages",
                                headers=[("x-api-key", "sk-ant-x")],
                                body=b'{"model": "m", "secret": "s"}')
    assert fmt.check(exchange) is exchange
    assert exchange["client"] == {"method": "POST", "path": "/v1/messages", "headers": {},
                                  "body": {"model": "m", "secret": fmt.MASK}}
    assert "sk-ant-x" not in json.dumps(exchange)
    assert fmt.new_exchange(recorded_at=0, method="POST", path="/", headers=(),
                            body=b"not json")["client"]["body"] == "not json"


@pytest.mark.parametrize("bad", [{}, {"format": "other", "version": 1},
                                 {"format": fmt.FORMAT, "version": 2}, []])
def test_other_files_and_versions_are_refused(bad):
    with pytest.raises(ValueError):
        fmt.check(bad)


def _sse(message_id: str, text: str, *, ping: bool = False, created: int = 1) -> dict:
    events = [("message_start", {"type": "message_start", "message": {"id": message_id}})]
    if ping:
        events.append(("ping", {"type": "ping"}))
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": text}}),
               ("message_stop", {"type": "message_stop", "created_at": created})]
    body = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
    return {"status": 200, "chunks": [[0.1, body[:7]], [0.2, body[7:]]]}


def test_ids_clocks_and_pings_are_not_differences():
    assert diff_streams(_sse("msg_a", "hi"),
                            _sse("msg_b", "hi", ping=True, created=2)) == []


def test_a_changed_event_is_shown_as_a_diff():
    diff = diff_streams(_sse("msg_a", "hi"), _sse("msg_a", "ho"))
    assert diff[:2] == ["--- recorded", "+++ replayed"]
    assert any(line.startswith("-") and '"hi"' in line for line in diff)
    assert any(line.startswith("+") and '"ho"' in line for line in diff)


def test_the_place_of_an_id_matters_not_its_value():
    first = {"status": 200, "chunks": [[0, json.dumps({"a": "msg_1", "b": "msg_2"})]]}
    same = {"status": 200, "chunks": [[0, json.dumps({"a": "msg_x", "b": "msg_y"})]]}
    swapped = {"status": 200, "chunks": [[0, json.dumps({"a": "msg_x", "b": "msg_x"})]]}
    assert diff_streams(first, same) == []
    assert diff_streams(first, swapped) != []


def test_a_changed_status_is_a_difference():
    assert diff_streams({"status": 200, "chunks": [[0, "{}"]]},
                            {"status": 503, "chunks": [[0, "{}"]]}) != []


# --- untrusted files ------------------------------------------------------------------

GOLDEN = Path(__file__).parents[1] / "golden" / "claude_basic_chat.json"


def _golden() -> dict:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def _set(exchange: dict, where: tuple, value) -> dict:
    target = exchange
    for step in where[:-1]:
        target = target[step]
    target[where[-1]] = value
    return exchange


@pytest.mark.parametrize(("where", "value", "said"), [
    (("client",), [], "client is a list"), (("client",), None, "client is null"),
    (("client", "body"), ..., "client.body is missing"),
    (("client", "headers"), [], "client.headers is a list"),
    (("client", "headers"), {"accept": 1}, "client.headers.accept"),
    (("client", "headers"), {"accept": "a\r\nx: y"}, "client.headers.accept"),
    (("client", "headers"), {"authorization": "Bearer x"}, "'authorization'"),
    (("client", "method"), "GET", "client.method"),
    (("client", "path"), "/admin", "client.path"),
    (("client", "body"), "\ud800", "client.body"),
    (("upstream",), {}, "upstream is an object"),
    (("upstream", 0), "x", "upstream[0] is a string"),
    (("upstream", 0, "status"), "200", "upstream[0].status"),
    (("upstream", 0, "status"), True, "upstream[0].status"),
    (("upstream", 0, "status"), 99999, "upstream[0].status"),
    (("upstream", 0, "method"), None, "upstream[0].method"),
    (("upstream", 0, "method"), "GET /x", "upstream[0].method"),
    (("upstream", 0, "path"), "http://x/", "upstream[0].path"),
    (("upstream", 0, "chunks"), "text", "upstream[0].chunks"),
    (("upstream", 0, "chunks"), [["0", "a"]], "upstream[0].chunks[0]"),
    (("upstream", 0, "chunks"), [[0, "a", 1]], "upstream[0].chunks[0]"),
    (("upstream", 0, "chunks"), [[0, None]], "upstream[0].chunks[0]"),
    (("upstream", 0, "chunks"), [{"t": 0}], "upstream[0].chunks[0]"),
    (("upstream", 0, "headers"), {"content-type": ["a"]}, "upstream[0].headers"),
    (("upstream", 0, "t"), "soon", "upstream[0].t"),
    (("client_stream",), [], "client_stream is a list"),
    (("client_stream", "status"), 2.5, "client_stream.status"),
    (("client_stream", "chunks"), [[float("nan"), "a"]], "client_stream.chunks[0]"),
    (("timings",), [], "timings is a list"),
    (("timings", "total"), "1", "timings.'total'"),
    (("recorded_at",), "today", "recorded_at"),
    (("dialect",), "soap", "dialect 'soap'"),
    (("session",), {"id": 1}, "session is an object"),
    (("server",), 5, "server is a number"),
    (("version",), True, "version True"),
])
def test_every_part_of_a_file_is_checked_and_said_in_one_line(where, value, said):
    exchange = _golden()
    if value is ...:
        del exchange["client"]["body"]
    else:
        _set(exchange, where, value)
    with pytest.raises(fmt.FormatError) as caught:
        fmt.check(exchange)
    message = str(caught.value)
    assert said in message and "\n" not in message


def test_the_golden_files_are_valid():
    for path in GOLDEN.parent.glob("*.json"):
        assert fmt.parse(path.read_bytes())["format"] == fmt.FORMAT


@pytest.mark.parametrize(("raw", "said"), [
    (b"{", "not JSON"), (b"\xff\xfe{}", "not UTF-8"), (b"[" * 100_000, "nested too deep"),
    (b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, "nested too deep"),
    (b" " * (fmt.MAX_FILE_BYTES + 1), "larger than 64 MiB"), (b"null", "not an lmsd"),
])
def test_unreadable_bytes_are_one_line(raw, said):
    with pytest.raises(fmt.FormatError) as caught:
        fmt.parse(raw)
    assert said in str(caught.value) and "\n" not in str(caught.value)


def test_nesting_the_parser_can_read_but_no_recording_has_is_refused():
    exchange = _golden()
    deep: list = []
    exchange["client"]["body"]["messages"][0]["content"] = deep
    for _ in range(fmt.MAX_DEPTH):
        deep.append([])
        deep = deep[0]
    with pytest.raises(fmt.FormatError, match="nested deeper than"):
        fmt.parse(json.dumps(exchange).encode())


def test_a_deep_client_stream_text_compares_without_recursion():
    deep = {"status": 200, "chunks": [[0, "[" * 100_000 + "]" * 100_000]]}
    assert diff_streams(deep, deep) == []


_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=5), st.just("\ud800"), st.just("/sessions"),
                    st.just("http://127.0.0.1:9/x"))
_VALUES = st.recursive(_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


_GOLDEN_PATHS = [p for p in _paths(json.loads(GOLDEN.read_text(encoding="utf-8"))) if p]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_GOLDEN_PATHS), _VALUES, st.booleans()),
                min_size=1, max_size=4))
def test_a_mutated_file_is_refused_in_one_line_or_is_valid(mutations):
    exchange = _golden()
    for where, value, delete in mutations:
        try:
            parent = exchange
            for step in where[:-1]:
                parent = parent[step]
            if delete:
                del parent[where[-1]]
            else:
                parent[where[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    try:
        raw = json.dumps(exchange).encode()
    except ValueError:
        return
    try:
        checked = fmt.parse(raw)
    except fmt.FormatError as exc:
        assert "\n" not in str(exc)
        return
    assert fmt.CLIENT_PATH.fullmatch(checked["client"]["path"])
    diff_streams(checked["client_stream"], checked["client_stream"])


@pytest.mark.parametrize("body", [
    {"api_key": 12345}, {"token": {"value": "sk-deep"}}, {"secret": ["sk-list"]},
    {"password": True}, {"auth": {"nested": {"deeper": ["sk-x"]}}},
    {"max_tokens": {"value": "sk-in-a-count"}}, {"credentials": 3.5}])
def test_a_key_like_name_is_masked_whatever_its_value(body):
    [(name, _)] = body.items()
    assert fmt.redact(body) == {name: fmt.MASK}


def test_counts_tool_schemas_and_the_conversation_are_kept():
    body = {"max_tokens": 5, "thinking": {"budget_tokens": 100}, "prompt_cache_key": "k",
            "tools": [{"name": "login", "input_schema": {"type": "object", "properties": {
                "token": {"type": "string"}}}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert fmt.redact(body) == body


def test_redacting_a_body_nested_100k_deep_does_not_recurse():
    deep: dict = {"leaf": {"api_key": "sk-bottom"}}
    for _ in range(100_000):
        deep = {"a": [deep]}
    redacted = fmt.redact(deep)
    for _ in range(100_000):
        redacted = redacted["a"][0]
    assert redacted == {"leaf": {"api_key": fmt.MASK}}
