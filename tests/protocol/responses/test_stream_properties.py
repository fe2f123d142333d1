"""Property: any valid upstream event sequence, cut anywhere and chunked any way, yields
a valid Anthropic event sequence; uncut, it yields exactly the upstream content."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmsd.protocol.sse import SSEDecoder
from tests.emulator.events import sse
from tests.support.anthropic_checks import check_stream, tool_inputs
from tests.support.pipelines import ResponsesPipeline
from tests.support.upstream_streams import Call, Reasoning, Text, llamacpp_events, lmstudio_events

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
args = st.dictionaries(st.text(min_size=1, max_size=8), st.one_of(text, st.integers()),
                       max_size=3)
call_ids = st.from_regex(r"call_[0-9]{9}", fullmatch=True)
part = st.one_of(
    st.builds(Text, text.filter(bool)),
    st.builds(Reasoning, text.filter(bool)),
    st.builds(Call, st.sampled_from(["Bash", "Read", "Edit"]), args,
              st.sampled_from(["deltas", "done_only"]), call_ids),
)


@st.composite
def upstream(draw):
    if draw(st.booleans()):
        calls = draw(st.lists(st.builds(Call, st.sampled_from(["Bash", "Read"]), args,
                                        st.just("deltas"), call_ids), min_size=1, max_size=3))
        return calls, llamacpp_events(*calls)
    parts = draw(st.lists(part, min_size=1, max_size=5))
    chunk = draw(st.integers(min_value=1, max_value=8))
    return parts, lmstudio_events(*parts, incomplete=draw(st.booleans()), chunk_size=chunk)


def run(raw: bytes, cuts: list[int]):
    conv = ResponsesPipeline(message_id="msg_p", model="m", input_tokens=10)
    out = conv.start()
    decoder = SSEDecoder()
    points = sorted({c % (len(raw) + 1) for c in cuts})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    for piece in pieces:
        for event in decoder.feed(piece):
            out += conv.feed(json.loads(event.data))
    for event in decoder.close():
        out += conv.feed(json.loads(event.data))
    return out + conv.finish()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(upstream(), st.lists(st.integers(min_value=0), max_size=20),
       st.none() | st.integers(min_value=0))
def test_any_stream_cut_and_chunked_is_valid(up, cuts, cut_at):
    parts, events = up
    raw = b"".join(sse(e) for e in events)
    if cut_at is not None:
        raw = raw[: cut_at % (len(raw) + 1)]
    out = run(raw, cuts)
    state = check_stream(out)
    if cut_at is None:
        assert state == "complete"
        expected_text = [p.text for p in parts if isinstance(p, Text)]
        got_text = []
        for e in out:
            if e["type"] == "content_block_start" and e["content_block"]["type"] == "text":
                got_text.append("")
            if e["type"] == "content_block_delta" and e["delta"]["type"] == "text_delta":
                got_text[-1] += e["delta"]["text"]
        assert got_text == expected_text
        calls = [p.arguments for p in parts if isinstance(p, Call)]
        assert list(tool_inputs(out).values()) == calls
    else:
        assert state in ("complete", "error")
