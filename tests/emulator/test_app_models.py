"""The LM Studio emulator's model endpoints, and the emulator served standalone
(``python -m tests.emulator``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
import trio

from tests.support.emulator_sdk import (
    MODEL,
    Start,
    message_of,
)

# -- models ------------------------------------------------------------------------------------


async def test_model_endpoints(start: Start) -> None:
    emu, client, url = await start()
    async with httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/lmstudio-greeting")).json() == {"lmstudio": True}
        openai_models = (await http.get("/v1/models")).json()
        assert openai_models["object"] == "list"
        assert openai_models["data"] == [
            {"id": MODEL, "object": "model", "owned_by": "organization_owner"}
        ]
        native = {m["key"]: m for m in (await http.get("/api/v1/models")).json()["models"]}
        qwen = native[MODEL]
        assert qwen["max_context_length"] == 262144 and qwen["format"] == "gguf"
        assert qwen["loaded_instances"][0]["config"]["context_length"] == 32768
        assert qwen["capabilities"] == {"vision": False, "trained_for_tool_use": True}
        assert native["google/gemma-3-12b"]["loaded_instances"] == []
        v0 = {m["id"]: m for m in (await http.get("/api/v0/models")).json()["data"]}
        assert v0[MODEL]["state"] == "loaded" and v0[MODEL]["loaded_context_length"] == 32768
        assert v0["google/gemma-3-12b"]["state"] == "not-loaded"

        load = await http.post("/api/v1/models/load", json={"model": MODEL, "context_length": 8192})
        assert load.json() == {
            "type": "llm",
            "instance_id": MODEL,
            "load_time_seconds": load.json()["load_time_seconds"],
            "status": "loaded",
            "load_config": {"context_length": 8192},
        }
        native = {m["key"]: m for m in (await http.get("/api/v1/models")).json()["models"]}
        assert native[MODEL]["loaded_instances"][0]["config"]["context_length"] == 8192
        assert emu.models[MODEL].context_length == 8192

        unload = await http.post("/api/v1/models/unload", json={"instance_id": MODEL})
        assert unload.status_code == 200
    with pytest.raises(openai.NotFoundError) as info:
        await client.responses.create(model=MODEL, input="hi")
    assert info.value.code == "model_not_found"
    assert message_of(info.value) == f"Model '{MODEL}' not found"
    posts = [(r.path, r.body) for r in emu.log if r.method == "POST"]
    assert posts[:2] == [
        ("/api/v1/models/load", {"model": MODEL, "context_length": 8192}),
        ("/api/v1/models/unload", {"instance_id": MODEL}),
    ]
    assert emu.log[-1].path == "/v1/responses" and emu.log[-1].status == 404


# -- standalone CLI ----------------------------------------------------------------------------


async def test_cli_serves_standalone() -> None:
    command = [sys.executable, "-m", "tests.emulator", "--port", "0", "--context-length", "4096",
               "--jit", "--jit-context-length", "2048", "--load-delay", "0.1"]
    cwd = Path(__file__).resolve().parents[2]
    process = await trio.lowlevel.open_process(command, cwd=cwd, stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None
        output = b""
        with trio.fail_after(20):
            while b"listening on " not in output or not output.endswith(b"\n"):
                chunk = await process.stderr.receive_some()
                assert chunk, output
                output += chunk
        url = output.decode().split("listening on ")[1].split()[0]
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/lmstudio-greeting")).json() == {"lmstudio": True}
            models = (await http.get("/api/v0/models")).json()["data"]
            assert models[0]["loaded_context_length"] == 4096
            assert models[1]["state"] == "not-loaded"
            cold = {"model": models[1]["id"], "messages": [{"role": "user", "content": "hi"}]}
            assert (await http.post("/v1/chat/completions", json=cold)).status_code == 200
            models = (await http.get("/api/v0/models")).json()["data"]
            assert models[1]["state"] == "loaded"  # JIT-loaded at --jit-context-length
            assert models[1]["loaded_context_length"] == 2048
    finally:
        process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
            if process.stderr is not None:
                await process.stderr.aclose()
