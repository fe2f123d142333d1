"""``GET /v1/models`` and ``GET /v1/models/{id}`` with the loaded context."""

from __future__ import annotations

import trio

MODEL = "qwen/qwen3-coder-30b"


async def _polled(lmsd) -> None:
    with trio.fail_after(10):
        while not lmsd.router.backends[0].watcher.models:
            await trio.sleep(0.05)


async def test_models_list_the_loaded_context_for_every_id(lmsd, http):
    await _polled(lmsd)
    response = await http.get("/v1/models", params={"limit": 1000})
    assert response.status_code == 200
    by_id = {m["id"]: m for m in response.json()["data"]}
    for model_id in ("claude-opus-5-5", "claude-sonnet-4-6", "claude-haiku-4-5", MODEL):
        assert by_id[model_id]["context_window"] == 32768, model_id
        assert by_id[model_id]["runtime"] == {"max_input_tokens": 32768}, model_id


async def test_one_model_answers(lmsd, http):
    await _polled(lmsd)
    for model_id in ("claude-sonnet-4-6", MODEL, "claude-haiku-4-5-20251001"):
        for prefix in ("", "/session/s-1"):
            response = await http.get(f"{prefix}/v1/models/{model_id}")
            assert response.status_code == 200, (model_id, response.text)
            body = response.json()
            assert body["type"] == "model" and body["id"] == model_id
            assert body["context_window"] == 32768
            assert body["runtime"] == {"max_input_tokens": 32768}


async def test_an_unknown_model_is_a_404_in_anthropics_shape(http):
    response = await http.get("/v1/models/nope-7b")
    assert response.status_code == 404
    assert response.json() == {"type": "error", "error": {
        "type": "not_found_error",
        "message": "model: 'nope-7b' is not a model lmsd serves (GET /v1/models lists them)"}}
