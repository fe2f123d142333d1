"""The Responses decoder ends a text part twice (content_part.done, output_item.done),
each restating the whole text: the filter decides once, and a call is made once."""

from __future__ import annotations

from lmsd.protocol.pivot import Finished, FunctionTool, TextDelta, TextDone, ToolCallStarted
from lmsd.protocol.repair import ToolCallRepair

BASH = FunctionTool("Bash", "", {"type": "object", "properties": {"command": {
    "type": "string"}}, "required": ["command"]})


def test_a_restated_text_done_makes_no_second_call():
    text = 'Let me look.\n<tool_call>{"name": "Bash", "arguments": {"command": "ls"}}' \
           '</tool_call>'
    repair = ToolCallRepair((BASH,))
    out = [e for i in range(0, len(text), 4) for e in repair.feed(TextDelta("m", text[i:i + 4]))]
    out += repair.feed(TextDone("m", text)) + repair.feed(TextDone("m", text))
    out += repair.feed(Finished("end"))
    assert [e.name for e in out if isinstance(e, ToolCallStarted)] == ["Bash"]
    dones = [e for e in out if isinstance(e, TextDone)]
    assert dones == [TextDone("m", "Let me look.\n")] * 2
    assert repair.repairs == ["hermes_json"] and repair.finish() == []


def test_a_text_that_was_all_call_ends_no_empty_text_part():
    text = '<tool_call>{"name": "Bash", "arguments": {"command": "ls"}}</tool_call>'
    repair = ToolCallRepair((BASH,))
    out = [e for i in range(0, len(text), 5) for e in repair.feed(TextDelta("m", text[i:i + 5]))]
    out += repair.feed(TextDone("m", text)) + repair.feed(TextDone("m", text))
    out += repair.feed(Finished("end"))
    assert not [e for e in out if isinstance(e, TextDelta | TextDone)]
    assert [e.name for e in out if isinstance(e, ToolCallStarted)] == ["Bash"]
