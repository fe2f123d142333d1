"""What the Anthropic front's end-to-end tests (tests/fronts/test_messages*.py) share: the
emulator's model, a tool, an image, and helpers around the official anthropic SDK and raw
SSE."""

from __future__ import annotations

import base64

from tests.support.anthropic_checks import parse_sse

MODEL = "qwen/qwen3-coder-30b"  # the emulator's loaded model
BASH = {"name": "Bash", "description": "Run a command",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()


def user(text):
    return [{"role": "user", "content": text}]


async def stream_final(client, **kwargs):
    kwargs.setdefault("model", "claude-sonnet-4-6")
    kwargs.setdefault("max_tokens", 1000)
    async with client.messages.stream(**kwargs) as stream:
        return await stream.get_final_message()


async def raw_stream(http, payload, path="/v1/messages"):
    response = await http.post(path, json={**payload, "stream": True})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return parse_sse(response.content)
