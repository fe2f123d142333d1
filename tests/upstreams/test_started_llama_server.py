"""A real llama-server that lmsd starts itself (``[[models]]``'s command line), on the tiny
generated model: it answers once ``/health`` does, a kill -9 brings it back under a new pid,
and when its owner ends no process is left. Skipped without the llama-server harness."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
import pytest
import trio

from lmsd.config.models import model_entry
from lmsd.upstreams.engines_started import Backoff, StartedEngine
from tests.engine.llama_server import llama_server_binary
from tests.engine.server import MODEL_ALIAS, model_path

pytestmark = pytest.mark.engine


def tiny_model():
    return model_entry({"name": MODEL_ALIAS, "command": [
        str(llama_server_binary()), "--model", str(model_path()), "--alias", MODEL_ALIAS,
        "--ctx-size", "2048", "--parallel", "1", "--threads", "2", "--threads-batch", "2",
        "--host", "127.0.0.1", "--port", "${PORT}", "--no-webui", "--temp", "0"],
        "health_timeout": 120})


async def answer(url: str) -> dict:
    async with httpx.AsyncClient(timeout=120) as http:
        response = await http.post(f"{url}/v1/chat/completions", json={
            "model": MODEL_ALIAS, "max_tokens": 4,
            "messages": [{"role": "user", "content": "hello"}]})
    assert response.status_code == 200, response.text
    return response.json()


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


async def test_lmsd_starts_llama_server_restarts_it_when_killed_and_stops_it_with_its_owner(
        caplog):
    caplog.set_level(logging.DEBUG, logger="lmsd")
    engine = StartedEngine(tiny_model(), backoff=Backoff(first=0.1))
    async with trio.open_nursery() as owner:
        url = await owner.start(engine.run)
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/health")).status_code == 200
        assert (await answer(url))["choices"][0]["finish_reason"] in ("length", "stop")
        first = engine.pid
        assert first is not None

        os.kill(first, 9)
        with trio.fail_after(120):
            while engine.pid == first:  # a new process, not yet healthy
                await trio.sleep(0.05)
            again = await engine.wait_ready()
        assert gone(first) and engine.restarts == 1
        assert (await answer(again))["model"] == MODEL_ALIAS
        second = engine.pid
        assert second is not None and second != first

        owner.cancel_scope.cancel()
    assert gone(second), "the engine stopped with its owner"
    events = [r.getMessage() for r in caplog.records if r.getMessage().startswith("engine.")]
    assert events.count("engine.started") == 1 and events.count("engine.crashed") == 1
    assert events.count("engine.restarted") == 1 and "engine.killed" not in events
    said = [r.lmsd_fields["line"] for r in caplog.records if r.getMessage() == "engine.output"]
    assert any("listening on" in line for line in said), "its output is in lmsd's log"
