"""Test-only LM Studio emulator (OpenAI-compatible /v1/responses and /v1/chat/completions,
an engine's own /v1/messages and count_tokens, plus model endpoints).

    emu = Emulator()
    emu.script(Reply(Reasoning("hmm"), Text("hi"), Call("Bash", {"command": "ls"})))
    emu.script(Reply(PrintedCall("qwen_xml", "Bash", {"command": "ls"})))  # as text
    emu.inject(Fault.drop(after_events=5))
    url = await serve_emulator(nursery, emu)   # "http://127.0.0.1:PORT"
    ...
    record = emu.generations[-1]               # emu.log holds every HTTP request
    emu.messages_flavor = "anthropic"          # /v1/messages as vLLM (messages.py)
    await record.done.wait()                   # handler finished (or was cancelled)
    emu = Emulator(jit=True)                   # LM Studio's JIT load on request (loading.py)
    emu.load_delay = 3.0                       # seconds each load takes; emu.loads: done

Standalone: ``python -m tests.emulator --port 1234``.
"""

from .app import create_app, serve_emulator
from .printed import FORMATS, PrintedCall, printed_call
from .script import Call, Fault, Reasoning, Reply, Text
from .state import (
    Emulator,
    ModelSpec,
    RequestRecord,
    StoredResponse,
    count_tokens,
    default_models,
    render_context,
    tokenize,
)

__all__ = [
    "FORMATS",
    "Call",
    "Emulator",
    "Fault",
    "ModelSpec",
    "PrintedCall",
    "Reasoning",
    "Reply",
    "RequestRecord",
    "StoredResponse",
    "Text",
    "count_tokens",
    "create_app",
    "default_models",
    "printed_call",
    "render_context",
    "serve_emulator",
    "tokenize",
]
