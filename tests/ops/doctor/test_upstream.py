"""``lmsd doctor``'s upstream checks against the emulator and broken setups: LM Studio and
how it was found, the loaded model and its context, every upstream by name."""

from __future__ import annotations

import json

import httpx
import pytest

from lmsd.config import Settings
from lmsd.ops.codex_env import codex_config
from lmsd.ops.doctor import diagnose
from lmsd.ops.doctor import upstream as doctor_upstream
from lmsd.ops.doctor.result import Result
from lmsd.ops.env import LiveContext
from lmsd.protocol.clients.compaction import claude_code_env
from lmsd.upstreams.discovery import Found
from tests.ops.doctor.support import (  # isolated: autouse, no real LM Studio leaks in
    MODEL,
    check,
    isolated,  # noqa: F401
    script,
    settings_for,
    shell,
)

# -- 1. LM Studio ------------------------------------------------------------------------------

async def test_everything_fine_against_the_emulator(emulator, tmp_path):
    settings = settings_for(tmp_path, emulator.url)
    script(tmp_path / "bin" / "claude", 'echo "2.1.329 (Claude Code)"\n')
    script(tmp_path / "bin" / "systemctl",
           'case "$2" in is-enabled) echo enabled;; is-active) echo active;; esac\n')
    codex = tmp_path / "home" / ".codex" / "config.toml"  # as `lmsd env --codex` prints it
    codex.parent.mkdir(parents=True)
    codex.write_text(codex_config(settings, LiveContext(32768, "the emulator's model")))
    results = await diagnose(settings, shell(tmp_path, settings, **claude_code_env(32768)))
    assert [r.check for r in results] == [
        "lmstudio", "api", "model", "cache", "claude_context", "codex_config",
        "proxy_port", "admin_port", "state_dir", "network", "service", "base_url",
        "attribution_header", "auth_token", "claude"]
    assert all(r.status == "ok" and r.fix is None for r in results), results
    cache = next(r for r in results if r.check == "cache")
    assert cache.detail.startswith("no slots to steer: lmsd re-warms")  # LM Studio
    lmstudio, api = results[0], results[1]
    assert lmstudio.detail == f"LM Studio at {emulator.url} (found by: config) answers"
    assert api.detail.startswith("responses, with previous_response_id chaining")


async def test_unreachable_lmstudio_fails_and_skips_the_model_check(tmp_path, dead_port):
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}")
    results = await diagnose(settings, shell(tmp_path, settings))
    lmstudio, api, model = results[0], results[1], results[2]
    assert api.status == "skip"
    assert lmstudio.status == "fail"
    assert "not reachable" in lmstudio.detail and "(found by: config)" in lmstudio.detail
    assert "lms server start" in lmstudio.fix and f"127.0.0.1:{dead_port}" in lmstudio.fix
    assert model.status == "skip" and "not reachable" in model.detail


async def test_auto_discovery_through_lmstudio_home(emulator, tmp_path, monkeypatch):
    home = tmp_path / "lmstudio"
    (home / ".internal").mkdir(parents=True)
    port = int(emulator.url.rsplit(":", 1)[1])
    (home / ".internal" / "http-server-config.json").write_text(json.dumps({"port": port}))
    monkeypatch.setenv("LMSTUDIO_HOME", str(home))  # PATH (set by `isolated`) has no lms
    settings = settings_for(tmp_path, "auto")
    result = await check(settings, shell(tmp_path, settings), "lmstudio")
    assert result == Result("lmstudio", "ok", f"LM Studio at http://127.0.0.1:{port} "
                            "(found by: http-server-config.json) answers")


async def test_auto_discovery_finding_nothing(tmp_path):
    settings = settings_for(tmp_path, "auto")
    result = await check(settings, shell(tmp_path, settings), "lmstudio")
    assert result.status == "fail"
    assert result.detail == ("LM Studio at http://localhost:1234 (found by: default) is not "
                             "reachable")
    assert "lms server start" in result.fix and "upstream = URL" in result.fix


# -- 2. the loaded model -----------------------------------------------------------------------

async def test_model_loaded_with_enough_context(emulator, tmp_path):
    settings = settings_for(tmp_path, emulator.url)
    result = await check(settings, shell(tmp_path, settings), "model")
    assert result == Result("model", "ok", f"loaded: {MODEL} (32768 tokens of context)")


@pytest.mark.parametrize("watch", ["true", "false"])
async def test_model_below_min_context_warns(emulator, tmp_path, watch):
    emulator.models[MODEL].context_length = 4096
    settings = settings_for(tmp_path, emulator.url, watch=watch)
    result = await check(settings, shell(tmp_path, settings), "model")
    assert result.status == "warn"
    assert f"{MODEL} (4096 tokens of context, below min_context 32768)" in result.detail
    assert ("lmsd raises it to 32768" in result.detail) == (watch == "true")
    assert result.fix == f"`lms unload {MODEL} && lms load {MODEL} --exact -c 32768`"


async def test_model_that_cannot_hold_min_context(emulator, tmp_path):
    emulator.models[MODEL].context_length = 4096
    emulator.models[MODEL].max_context_length = 8192
    settings = settings_for(tmp_path, emulator.url)
    result = await check(settings, shell(tmp_path, settings), "model")
    assert result.status == "warn" and "holds at most 8192 tokens" in result.fix


async def test_no_model_loaded_fails(emulator, tmp_path):
    emulator.models[MODEL].loaded = False
    settings = settings_for(tmp_path, emulator.url, min_context="65536")
    result = await check(settings, shell(tmp_path, settings), "model")
    assert result.status == "fail"
    assert result.detail == f"no model is loaded in LM Studio at {emulator.url}"
    assert result.fix == f"load a model in LM Studio, or run `lms load {MODEL} -c 65536`"


async def test_models_fall_back_to_api_v0():
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v0/models":
            return httpx.Response(200, json={"data": [
                {"id": "a/b", "type": "llm", "state": "loaded", "loaded_context_length": 40000,
                 "max_context_length": 131072},
                {"id": "c/d", "type": "embeddings", "state": "loaded"}]})
        return httpx.Response(404, json={"error": "not found"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        result = await doctor_upstream.check_models(
            Settings(), Found("http://lms.test", "config", True), client)
    assert result == Result("model", "ok", "loaded: a/b (40000 tokens of context)")


async def test_every_upstream_is_checked_by_name(emulator, tmp_path, dead_port):
    from lmsd.config import UpstreamConfig

    settings = settings_for(tmp_path, emulator.url)
    settings.upstreams = [UpstreamConfig(emulator.url, name="desk"),
                          UpstreamConfig(f"http://127.0.0.1:{dead_port}", name="lap",
                                         kind="chat")]
    results = await diagnose(settings, shell(tmp_path, settings, **claude_code_env(32768)))
    found = {r.check: r for r in results}
    assert [c for c in found if "[" in c] == [
        "lmstudio [desk]", "api [desk]", "model [desk]", "cache [desk]", "lmstudio [lap]",
        "api [lap]", "model [lap]", "cache [lap]"]
    assert found["lmstudio [desk]"].status == "ok" and found["model [desk]"].status == "ok"
    assert found["lmstudio [lap]"].status == "fail"
    assert f"127.0.0.1:{dead_port}" in found["lmstudio [lap]"].detail
    assert found["api [lap]"].detail == "chat (configured: upstream_api)"
    assert found["claude_context"].status == "ok"  # the context of the one that answers


async def test_a_gateway_says_which_one_and_the_headers_of_the_key(emulator, tmp_path):
    from lmsd.config import UpstreamConfig

    settings = settings_for(tmp_path, emulator.url)
    settings.upstreams = [UpstreamConfig(emulator.url, name="cluster", kind="chat",
                                         gateway="smg")]
    settings.affinity_headers = ["x-smg-routing-key"]
    found = {r.check: r for r in await diagnose(
        settings, shell(tmp_path, settings, **claude_code_env(32768)))}
    assert found["cache [cluster]"] == Result(
        "cache [cluster]", "ok", "gateway smg: it places each conversation on a replica; "
        "the session key goes in x-smg-routing-key")
    settings.affinity_headers = []
    found = {r.check: r for r in await diagnose(
        settings, shell(tmp_path, settings, **claude_code_env(32768)))}
    assert found["cache [cluster]"].status == "warn"
    assert "affinity_headers" in found["cache [cluster]"].fix
