"""The recorded exchange's format, its redaction and the comparison of client streams."""

from __future__ import annotations

import json

import pytest

from lmsd.protocol import recording as fmt


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
    assert fmt.diff_streams(_sse("msg_a", "hi"),
                            _sse("msg_b", "hi", ping=True, created=2)) == []


def test_a_changed_event_is_shown_as_a_diff():
    diff = fmt.diff_streams(_sse("msg_a", "hi"), _sse("msg_a", "ho"))
    assert diff[:2] == ["--- recorded", "+++ replayed"]
    assert any(line.startswith("-") and '"hi"' in line for line in diff)
    assert any(line.startswith("+") and '"ho"' in line for line in diff)


def test_the_place_of_an_id_matters_not_its_value():
    first = {"status": 200, "chunks": [[0, json.dumps({"a": "msg_1", "b": "msg_2"})]]}
    same = {"status": 200, "chunks": [[0, json.dumps({"a": "msg_x", "b": "msg_y"})]]}
    swapped = {"status": 200, "chunks": [[0, json.dumps({"a": "msg_x", "b": "msg_x"})]]}
    assert fmt.diff_streams(first, same) == []
    assert fmt.diff_streams(first, swapped) != []


def test_a_changed_status_is_a_difference():
    assert fmt.diff_streams({"status": 200, "chunks": [[0, "{}"]]},
                            {"status": 503, "chunks": [[0, "{}"]]}) != []
