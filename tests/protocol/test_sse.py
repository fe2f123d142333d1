from hypothesis import given
from hypothesis import strategies as st

from lmsd.protocol.sse import PING, ServerSentEvent, SSEDecoder, encode


def decode_all(chunks: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.close()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    return [*pieces, data[last:]]


STREAM = (
    b"event: response.created\ndata: {\"a\": 1}\n\n"
    b": a comment\n"
    b"data: line one\ndata: line two\n\n"
    b"event: x\r\ndata: crlf \xc3\xa9\xe2\x82\xac\r\n\r\n"
    b"data:nospace\n\n"
)
EXPECTED = [
    ServerSentEvent("response.created", '{"a": 1}'),
    ServerSentEvent(None, "line one\nline two"),
    ServerSentEvent("x", "crlf \u00e9\u20ac"),
    ServerSentEvent(None, "nospace"),
]


def test_decodes_fields_comments_multiline_and_crlf():
    assert decode_all([STREAM]) == EXPECTED


def test_byte_by_byte_splits_utf8_and_crlf():
    assert decode_all([bytes([b]) for b in STREAM]) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_chunking_gives_the_same_events(cuts):
    assert decode_all(split(STREAM, cuts)) == EXPECTED


def test_very_long_line():
    payload = "x" * 3_000_000  # lmsproxy's scanner died at 256 KiB
    data = f"data: {payload}\n\n".encode()
    events = decode_all([data[i:i + 65536] for i in range(0, len(data), 65536)])
    assert events == [ServerSentEvent(None, payload)]


def test_event_cut_off_before_its_blank_line_is_discarded():
    assert decode_all([b"data: whole\n\nevent: e\ndata: {\"cut"]) == [
        ServerSentEvent(None, "whole")]


def test_encode_names_the_event_after_its_type():
    assert encode({"type": "ping"}) == PING == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert encode({"type": "x", "t": "é"}) == 'event: x\ndata: {"type":"x","t":"é"}\n\n'.encode()


def test_half_a_surrogate_pair_goes_out_as_its_json_escape():
    """UTF-8 cannot carry it; the escape can, and the client's strings rejoin the pair."""
    import json

    frames = encode({"type": "t", "text": "ok\ud83d"}) + encode({"type": "t", "text": "\ude00"})
    assert b'"ok\\ud83d"' in frames
    halves = [json.loads(e.data)["text"] for e in decode_all([frames])]
    assert "".join(halves).encode("utf-16", "surrogatepass").decode("utf-16") == "ok\U0001f600"
