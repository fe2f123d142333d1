"""The LM Studio emulator's JIT loading (``Emulator(jit=True)``, off by default): a request
naming a downloaded model that is not loaded loads it at the default context; auto-evict
keeps one JIT-loaded model; models loaded through the REST API stay."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from tests.emulator import ModelSpec
from tests.support.emulator_sdk import MODEL, Start

COLD = "google/gemma-3-12b"
OTHER = "mistral/devstral-small"
THIRD = "openai/gpt-oss-20b"


def models() -> list[ModelSpec]:
    """The loaded coder model and three downloaded, unloaded ones (one listed at 16384, to
    show the JIT load sets the default context)."""
    return [ModelSpec(MODEL), ModelSpec(COLD, loaded=False, context_length=16384),
            ModelSpec(OTHER, loaded=False), ModelSpec(THIRD, loaded=False)]


def chat(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


def loaded(emu: Any) -> dict[str, tuple[int, str | None]]:
    return {m.key: (m.context_length, m.loaded_by) for m in emu.models.values() if m.loaded}


async def test_jit_is_off_by_default(start: Start) -> None:
    emu, _, url = await start(models=models())
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.post("/v1/chat/completions", json=chat(COLD))
    assert answer.status_code == 404
    assert emu.loads == [] and not emu.models[COLD].loaded


async def test_a_request_jit_loads_its_model_at_the_default_context(start: Start) -> None:
    emu, _, url = await start(models=models(), jit=True)
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.post("/v1/chat/completions", json=chat(COLD))
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == COLD
        native = {m["key"]: m for m in (await http.get("/api/v1/models")).json()["models"]}
    config = native[COLD]["loaded_instances"][0]["config"]
    assert config["context_length"] == 4096 and config["parallel"] == 4
    assert native[MODEL]["loaded_instances"][0]["config"]["parallel"] == 1  # as it was
    assert [(x.model, x.context_length, x.how) for x in emu.loads] == [(COLD, 4096, "jit")]
    assert not [r for r in emu.log if r.path == "/api/v1/models/load"]


async def test_the_default_context_is_a_parameter(start: Start) -> None:
    emu, _, url = await start(models=models(), jit=True, jit_context_length=8192)
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.post("/v1/responses", json={"model": COLD, "input": "hi"})
    assert answer.status_code == 200, answer.text
    assert loaded(emu)[COLD] == (8192, "jit")


async def test_requests_during_a_jit_load_wait_for_the_same_load(start: Start) -> None:
    emu, _, url = await start(models=models(), jit=True)
    emu.load_gate = gate = trio.Event()
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:

        async def ask() -> None:
            statuses.append((await http.post("/v1/chat/completions", json=chat(COLD))).status_code)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            nursery.start_soon(ask)
            with trio.fail_after(10):
                while len([r for r in emu.log if r.body is not None]) < 2:
                    await trio.sleep(0.01)
            assert not emu.models[COLD].loaded and COLD in emu.jit_loading
            gate.set()
    assert statuses == [200, 200]
    assert [(x.model, x.how) for x in emu.loads] == [(COLD, "jit")]
    assert emu.jit_loading == {}


async def test_auto_evict_keeps_one_jit_model_and_the_rest_loaded_ones_stay(
        start: Start) -> None:
    emu, _, url = await start(models=models(), jit=True)
    emu.messages_flavor = "lmstudio"
    async with httpx.AsyncClient(base_url=url) as http:
        rest = await http.post("/api/v1/models/load",
                               json={"model": THIRD, "context_length": 32768})
        assert rest.status_code == 200, rest.text
        first = await http.post("/v1/messages", json={**chat(COLD), "max_tokens": 10})
        assert first.status_code == 200, first.text
        assert loaded(emu) == {MODEL: (32768, None), THIRD: (32768, "rest"),
                               COLD: (4096, "jit")}
        second = await http.post("/v1/responses", json={"model": OTHER, "input": "hi"})
        assert second.status_code == 200, second.text
    assert loaded(emu) == {MODEL: (32768, None), THIRD: (32768, "rest"),
                           OTHER: (4096, "jit")}  # COLD was evicted, the others stay
    assert [(x.model, x.how) for x in emu.loads] == [(THIRD, "rest"), (COLD, "jit"),
                                                      (OTHER, "jit")]


async def test_a_model_reloaded_through_the_api_is_no_longer_evicted(start: Start) -> None:
    emu, _, url = await start(models=models(), jit=True)
    async with httpx.AsyncClient(base_url=url) as http:
        assert (await http.post("/v1/chat/completions", json=chat(COLD))).status_code == 200
        unload = await http.post("/api/v1/models/unload", json={"instance_id": COLD})
        assert unload.status_code == 200
        reload = await http.post("/api/v1/models/load",
                                 json={"model": COLD, "context_length": 32768})
        assert reload.status_code == 200
        assert (await http.post("/v1/chat/completions", json=chat(OTHER))).status_code == 200
    assert loaded(emu) == {MODEL: (32768, None), COLD: (32768, "rest"), OTHER: (4096, "jit")}


async def test_a_failed_jit_load_is_an_error_and_loads_nothing(start: Start) -> None:
    emu, _, url = await start(models=models(), jit=True)
    emu.fail_loads = 1
    async with httpx.AsyncClient(base_url=url) as http:
        failed = await http.post("/v1/chat/completions", json=chat(COLD))
        assert failed.status_code == 500
        assert "Failed to load model" in failed.text
        assert not emu.models[COLD].loaded and emu.loads == []
        again = await http.post("/v1/chat/completions", json=chat(COLD))
    assert again.status_code == 200 and loaded(emu)[COLD] == (4096, "jit")


async def test_an_unknown_model_is_still_not_found(start: Start) -> None:
    emu, _, url = await start(models=models(), jit=True)
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.post("/v1/chat/completions", json=chat("nobody/nothing"))
    assert answer.status_code == 404 and emu.loads == []
