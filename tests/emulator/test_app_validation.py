"""The LM Studio emulator's strict request validation (as LM Studio refuses) and
images."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
import trio

from tests.emulator import (
    Call,
    Reply,
    Text,
)
from tests.support.emulator_sdk import (
    BASH_TOOL,
    MODEL,
    PNG,
    Start,
    message_of,
    user,
)

# -- strict validation -------------------------------------------------------------------------

CALL = {"type": "function_call", "call_id": "call_1", "name": "Bash", "arguments": "{}"}
INVALID_REQUESTS: dict[str, tuple[dict[str, Any], str, str | None]] = {
    "list_output": (
        {"input": [CALL, {"type": "function_call_output", "call_id": "call_1", "output": []}]},
        "invalid_union",
        "Invalid type for 'input'.",
    ),
    "missing_output": (
        {"input": [CALL, {"type": "function_call_output", "call_id": "call_1"}]},
        "invalid_union",
        "Invalid type for 'input'.",
    ),
    "mixed_text_image": (
        {
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "look"},
                        {"type": "input_image", "image_url": PNG},
                    ],
                }
            ]
        },
        "invalid_union",
        None,
    ),
    "remote_image": (
        {
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": "https://x/y.png"}],
                }
            ]
        },
        "invalid_union",
        None,
    ),
    "webp_image": (
        {
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": "data:image/webp;base64,AA"}],
                }
            ]
        },
        "invalid_union",
        None,
    ),
    "unknown_item": ({"input": [{"type": "item_reference", "id": "x"}]}, "invalid_union", None),
    "bad_tool_type": (
        {"input": "x", "tools": [BASH_TOOL, {"type": "web_search"}]},
        "invalid_string",  # LM Studio 0.4.11+ (lmstudio-bug-tracker #1810, #1812)
        "Invalid",
    ),
    "nested_tool": (
        {"input": "x", "tools": [{"type": "function", "function": {"name": "Bash"}}]},
        "unrecognized_keys",
        None,
    ),
    "object_tool_choice": (
        {"input": "x", "tool_choice": {"type": "function", "name": "Bash"}},
        "invalid_union",
        None,
    ),
    "unknown_key": ({"input": "x", "user": "me"}, "unrecognized_keys", None),
}


@pytest.mark.parametrize("case", list(INVALID_REQUESTS))
async def test_strict_validation(start: Start, case: str) -> None:
    emu, client, _ = await start()
    extra, code, message = INVALID_REQUESTS[case]
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model=MODEL, extra_body=extra)
    assert info.value.status_code == 400 and info.value.code == code
    if message is not None:
        assert message_of(info.value) == message
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "invalid_request_error"
    if case == "bad_tool_type":
        assert info.value.param == "tools.1.type"
    if case == "unknown_key":
        assert info.value.param == "user"
    record = emu.log[-1]
    with trio.fail_after(5):
        await record.done.wait()
    assert record.outcome == "rejected" and record.status == 400 and record.reply is None


async def test_unmatched_call_id(start: Start) -> None:
    _, client, _ = await start()
    orphan = {"type": "function_call_output", "call_id": "call_9", "output": "x"}
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model=MODEL, input=[user("a"), orphan])
    assert "call_9" in message_of(info.value)


async def test_call_output_matches_previous_response(start: Start) -> None:
    emu, client, _ = await start()
    emu.script(Reply(Call("Bash", {"command": "ls"}, call_id="call_42")), Reply(Text("ok")))
    first = await client.responses.create(model=MODEL, input="run ls", tools=[BASH_TOOL])
    output = {"type": "function_call_output", "call_id": "call_42", "output": "file.txt"}
    second = await client.responses.create(
        model=MODEL, input=[output], previous_response_id=first.id, tools=[BASH_TOOL]
    )
    assert second.output_text == "ok"


async def test_images(start: Start) -> None:
    _, client, url = await start()
    image_only = {"role": "user", "content": [{"type": "input_image", "image_url": PNG}]}
    with pytest.raises(openai.BadRequestError, match="does not support images"):
        await client.responses.create(model=MODEL, input=[image_only])
    async with httpx.AsyncClient() as http:
        loaded = await http.post(f"{url}/api/v1/models/load", json={"model": "google/gemma-3-12b"})
    assert loaded.json()["status"] == "loaded"
    response = await client.responses.create(
        model="google/gemma-3-12b", input=[user("describe"), image_only]
    )
    assert response.status == "completed"
