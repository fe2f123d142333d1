"""``decide``: which dialect ``upstream_api = "auto"`` speaks to each kind of server, and
why. LM Studio keeps Responses (chaining); a server with its own /v1/messages gets
Messages however it shows it; llama-cpp-python's server, which has none, stays on chat."""

from __future__ import annotations

import httpx
import pytest

from lmsd.upstreams.dialect import (
    CONFIGURED,
    KINDS,
    ChatDialect,
    MessagesDialect,
    ResponsesDialect,
    decide,
)
from tests.emulator import Emulator, serve_emulator


async def served(nursery, flavor: str, *, lmstudio: bool = False) -> Emulator:
    emu = Emulator()
    emu.lmstudio_api, emu.messages_flavor = lmstudio, flavor  # type: ignore[assignment]
    await serve_emulator(nursery, emu)
    return emu


async def decided(emu: Emulator, setting: str = "auto"):
    async with httpx.AsyncClient() as client:
        return await decide(client, emu.url or "", setting)


async def test_lm_studio_keeps_responses_and_says_why(nursery):
    emu = await served(nursery, "lmstudio", lmstudio=True)
    kind, why = await decided(emu)
    assert kind is ResponsesDialect
    assert "lmstudio-greeting" in why and "previous_response_id" in why
    assert [r.path for r in emu.log] == ["/lmstudio-greeting"]  # nothing else probed


@pytest.mark.parametrize(("flavor", "kind", "probes"), [
    # llama-server and vLLM count: one probe settles it
    ("llama_server", MessagesDialect, ["/v1/messages/count_tokens"]),
    ("anthropic", MessagesDialect, ["/v1/messages/count_tokens"]),
    # Ollama has /v1/messages but no count_tokens: its 400 to an empty body shows it
    ("ollama", MessagesDialect, ["/v1/messages/count_tokens", "/v1/messages"]),
    # LM Studio's 200 with an error body to count_tokens (an unknown route) proves
    # nothing; its /v1/messages (0.4.1 on) refuses the empty body (seen here without its
    # greeting, as behind a proxy)
    ("lmstudio", MessagesDialect, ["/v1/messages/count_tokens", "/v1/messages"]),
    # llama-cpp-python's server: no /v1/messages at all, and not llama-server (/props)
    ("none", ChatDialect, ["/v1/messages/count_tokens", "/v1/messages", "/props"]),
])
async def test_auto_probes_for_messages(nursery, flavor, kind, probes):
    emu = await served(nursery, flavor)
    chosen, why = await decided(emu)
    assert chosen is kind
    assert ("/v1/messages" in why) if kind is MessagesDialect else (
        why == "not LM Studio, no /v1/messages: the portable /v1/chat/completions")
    assert [r.path for r in emu.log] == ["/lmstudio-greeting", "/v1/models", *probes]
    assert not any(r.path == "/v1/messages" and r.outcome == "completed" for r in emu.log)


async def test_the_count_probe_names_a_model_the_server_serves(nursery):
    """vLLM answers count_tokens with a 404 for a model it does not serve."""
    emu = await served(nursery, "anthropic")
    await decided(emu)
    probe = next(r for r in emu.log if r.path == "/v1/messages/count_tokens")
    assert probe.body["model"] == "qwen/qwen3-coder-30b"
    assert probe.headers["anthropic-version"] == "2023-06-01"
    assert probe.outcome == "completed"


async def test_a_server_that_wants_a_key_stays_on_chat(nursery):
    emu = await served(nursery, "llama_server")
    emu.api_key = "sk-lm-abc:def"
    chosen, _ = await decided(emu)
    assert chosen is ChatDialect


async def test_nothing_listening_is_decided_later():
    async with httpx.AsyncClient() as client:
        assert await decide(client, "http://127.0.0.1:9", "auto") is None


@pytest.mark.parametrize("setting", ["responses", "chat", "messages"])
async def test_a_configured_kind_is_not_probed(setting):
    async with httpx.AsyncClient() as client:
        chosen, why = await decide(client, "http://127.0.0.1:9", setting)
    assert chosen is KINDS[setting] and why == CONFIGURED
    assert MessagesDialect.name == "messages" and MessagesDialect.counts_tokens
