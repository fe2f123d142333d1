"""What the emulator's own tests (tests/emulator/test_app_*.py) share: its loaded model, a
tool, an image, and small helpers around the official openai SDK."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import openai
import trio

MODEL = "qwen/qwen3-coder-30b"
BASH_TOOL = {
    "type": "function",
    "name": "Bash",
    "description": "Run a shell command",
    "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
}
PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGAAAAAE"
    "AAH2FzhVAAAAAElFTkSuQmCC"
)

# the `start` fixture (tests/conftest.py): serve an Emulator, get (emu, openai client, url)
Start = Callable[..., Awaitable[tuple[Any, Any, str]]]


async def collect(stream: Any) -> list[Any]:
    with trio.fail_after(10):
        return [event async for event in stream]


def message_of(error: openai.APIStatusError) -> str:
    """The error body's message (the SDK prefixes `.message` with the status code)."""
    assert isinstance(error.body, dict)
    return error.body["message"]


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": text}
