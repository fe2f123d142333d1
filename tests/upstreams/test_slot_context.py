"""llama-server lists no context: its ``/props`` says what a slot holds (issue 23, Major 4).
``lmsd status`` showed ``context ? / ?`` and ``lmsd env`` sized Claude Code for 32768 while
the slot held 8192, so Claude Code was told to compact long after the engine overflowed."""

from __future__ import annotations

import os
import sys

import httpx
import trio

from lmsd.ops.status import format_status
from tests.emulator import Emulator
from tests.support.daemon import MODEL, admin_get

SLOT = 8192


async def llama_server(start_lmsd, nursery, **settings):
    from tests.emulator import serve_emulator

    emu = Emulator()
    emu.lmstudio_api, emu.llama_server = False, True  # as llama-server answers
    emu.models[MODEL].context_length = SLOT
    url = await serve_emulator(nursery, emu)
    server = await start_lmsd(url, poll_interval="0.05", **settings)
    with trio.fail_after(20):
        while not server.router.backends[0].watcher.polls:
            await trio.sleep(0.01)
    return emu, server


async def test_the_slot_context_is_read_from_props(start_lmsd, nursery):
    emu, server = await llama_server(start_lmsd, nursery, watch="true")
    status = (await admin_get(server, "/status")).json()
    assert [(m["key"], m["context_length"]) for m in status["models"]] == [(MODEL, SLOT)]
    assert f"context {SLOT} / {SLOT}" in format_status(status)
    assert "context ? / ?" not in format_status(status)
    assert server.router.backends[0].upstream.name == "llama-server"
    types = [e["type"] for e in server.bus.recent]
    assert "model.reloading" not in types  # llama-server cannot be reloaded larger
    polls = server.router.backends[0].watcher.polls
    props = [r for r in emu.log if r.path == "/props"]
    with trio.fail_after(20):
        while server.router.backends[0].watcher.polls < polls + 3:
            await trio.sleep(0.02)
    assert len([r for r in emu.log if r.path == "/props"]) == len(props)  # not every poll


async def test_lmsd_env_sizes_claude_code_for_the_slot(start_lmsd, nursery):
    _, server = await llama_server(start_lmsd, nursery)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMSD_")}
    env["LMSD_ADMIN_LISTEN"] = server.admin_url.removeprefix("http://")
    done = await trio.run_process([sys.executable, "-m", "lmsd", "env"], capture_stdout=True,
                                  env=env)
    out = done.stdout.decode()
    assert f"is loaded with {SLOT} tokens of context" in out, out
    assert "no model is loaded" not in out


async def test_a_prompt_over_the_slot_is_refused_before_it_is_sent(start_lmsd, nursery):
    emu, server = await llama_server(start_lmsd, nursery, watch="true")
    words = " ".join(["context"] * (SLOT * 2))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        response = await http.post("/v1/messages", json={
            "model": "claude-sonnet-4-6", "max_tokens": 20,
            "messages": [{"role": "user", "content": words}]})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"].startswith("prompt is too long: ")
    assert response.json()["error"]["message"].endswith(f" > {SLOT} maximum")
    sent = [r.path for r in emu.log if r.path in ("/v1/chat/completions", "/v1/messages")]
    assert sent == []  # no prefill spent on a prompt that cannot fit
