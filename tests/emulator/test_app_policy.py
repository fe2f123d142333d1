"""The LM Studio emulator's default policy (what it answers unscripted) and callable
script entries."""

from __future__ import annotations

import json

from tests.emulator import (
    Reply,
    Text,
)
from tests.support.emulator_sdk import (
    BASH_TOOL,
    MODEL,
    Start,
)

# -- default policy ----------------------------------------------------------------------------


async def test_default_policy(start: Start) -> None:
    _, client, _ = await start()
    first = await client.responses.create(model=MODEL, input="run it", tools=[BASH_TOOL])
    (call,) = first.output
    assert call.type == "function_call" and call.name == "Bash"
    assert json.loads(call.arguments)["command"] == "echo hello-from-tool"
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "hello"}
    second = await client.responses.create(
        model=MODEL, input=[result], previous_response_id=first.id, tools=[BASH_TOOL]
    )
    assert second.output_text == "done"
    plain = await client.responses.create(model=MODEL, input="hi")
    assert plain.output_text == "Hello from the LM Studio emulator."


async def test_callable_script_entry(start: Start) -> None:
    emu, client, _ = await start()
    emu.script(lambda record: Reply(Text(f"you said {record.new_items[-1]['content']}")))
    response = await client.responses.create(model=MODEL, input="ping")
    assert response.output_text == "you said ping"
