"""``lmsd doctor``'s context check: Claude Code's compaction in the calling shell against
the loaded context (LM Studio's, or the running daemon's live view)."""

from __future__ import annotations

from urllib.parse import urlsplit

import trio

from lmsd.protocol.clients.compaction import claude_code_env
from tests.ops.doctor.support import (  # isolated: autouse, no real LM Studio leaks in
    check,
    isolated,  # noqa: F401
    settings_for,
    shell,
)

# -- 2b. Claude Code's compaction against the loaded context ------------------------------


async def test_context_env_missing_warns_with_the_fix(emulator, tmp_path):
    """The loaded 32k context with Claude Code's defaults (a 1m window): compaction at 967k."""
    settings = settings_for(tmp_path, emulator.url)
    result = await check(settings, shell(tmp_path, settings), "claude_context")
    assert result.status == "warn"
    assert "would compact at 967000 tokens but the loaded context is 32768" in result.detail
    assert result.fix == 'eval "$(lmsd env)"'


async def test_context_env_for_another_context_warns(emulator, tmp_path):
    """Settings printed for 64k no longer fit once the model is loaded at 32k."""
    settings = settings_for(tmp_path, emulator.url)
    env = shell(tmp_path, settings, **claude_code_env(65536))
    result = await check(settings, env, "claude_context")
    assert result.status == "warn" and "overflows first" in result.detail


async def test_context_env_for_a_local_model(emulator, tmp_path):
    settings = settings_for(tmp_path, emulator.url)
    model = "qwen/qwen3-coder-30b"
    # the percentage for Claude names also shrinks a local id's real window: far too early
    mixed = {**claude_code_env(32768), "CLAUDE_CODE_MAX_CONTEXT_TOKENS": "32768"}
    result = await check(settings, shell(tmp_path, settings, ANTHROPIC_MODEL=model, **mixed),
                         "claude_context")
    assert result.status == "warn" and "far below" in result.detail
    assert result.fix == f'eval "$(lmsd env --model {model})"'
    env = shell(tmp_path, settings, ANTHROPIC_MODEL=model, **claude_code_env(32768, model))
    result = await check(settings, env, "claude_context")
    assert result.status == "ok", result
    assert result.detail == ("Claude Code compacts at 15672 tokens, within the loaded "
                             "context of 32768")


async def test_context_env_reads_the_running_daemon(start_lmsd, emulator, tmp_path):
    """With lmsd running, its live view counts: it saw 32k, LM Studio now says 64k."""
    server = await start_lmsd(emulator.url, poll_interval="3600")
    with trio.fail_after(10):
        while not server.router.backends[0].watcher.models:
            await trio.sleep(0.05)
    emulator.models["qwen/qwen3-coder-30b"].context_length = 65536
    settings = settings_for(tmp_path, emulator.url,
                            admin_listen=urlsplit(server.admin_url).netloc)
    env = shell(tmp_path, settings, **claude_code_env(65536))
    result = await check(settings, env, "claude_context")
    assert result.status == "warn" and "the loaded context is 32768" in result.detail


async def test_context_env_skipped_without_a_loaded_model(tmp_path, dead_port):
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}")
    result = await check(settings, shell(tmp_path, settings), "claude_context")
    assert result.status == "skip" and result.fix is None
