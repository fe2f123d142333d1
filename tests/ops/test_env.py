"""``lmsd env``, run as a real subprocess: the Claude Code exports, sized for the running
daemon's context, and Codex's config.toml block."""

from __future__ import annotations

import json
import tomllib

import trio

from lmsd.protocol.clients.compaction import simulate, target_threshold
from tests.ops.lmsd_cli import (
    MODEL,
    admin_address,
    clean_env,
    closed_port,
    ok,
    run,
)


async def test_env_prints_the_claude_code_exports():
    port = closed_port()
    text = ok(await run("env", "--listen", "127.0.0.1:4000",
                        env=clean_env(LMSD_ADMIN_LISTEN=f"127.0.0.1:{port}")))
    assert text.splitlines() == [
        '# Point Claude Code at lmsd: eval "$(lmsd env)"',
        f"# Compaction sized for 32768 tokens: the daemon is not running (nothing answers "
        f"at http://127.0.0.1:{port}): assuming min_context 32768; run lmsd env again once "
        f"it runs",
        "export ANTHROPIC_BASE_URL=http://127.0.0.1:4000",
        "export ANTHROPIC_AUTH_TOKEN=lmsd",
        "export CLAUDE_CODE_ATTRIBUTION_HEADER=0",
        "export CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
        "export CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1",
        "export API_TIMEOUT_MS=600000",
        "export CLAUDE_CODE_SIMPLE_SYSTEM_PROMPT=1",
        "export CLAUDE_CODE_DISABLE_1M_CONTEXT=1",
        "export CLAUDE_CODE_MAX_OUTPUT_TOKENS=4096",
        "export CLAUDE_CODE_AUTO_COMPACT_WINDOW=100000",
        "export CLAUDE_AUTOCOMPACT_PCT_OVERRIDE=16.34",
    ]
    shell = await trio.run_process(
        ["sh", "-c", 'eval "$1"; printf "%s %s" "$ANTHROPIC_BASE_URL" "$API_TIMEOUT_MS"',
         "sh", text], capture_stdout=True)
    assert shell.stdout == b"http://127.0.0.1:4000 600000"


async def test_env_sizes_compaction_for_the_running_daemons_context(start_lmsd, emulator):
    """By default Claude Code runs on the loaded model's own id, with the lean system prompt
    and the real window (no percentage); ``--claude-names`` keeps Claude's names and full
    prompt, with the percentage that puts compaction at the same point."""
    emulator.models["qwen/qwen3-coder-30b"].context_length = 65536
    server = await start_lmsd(emulator.url)
    with trio.fail_after(10):
        while not server.router.backends[0].watcher.models:
            await trio.sleep(0.05)
    env = clean_env(LMSD_ADMIN_LISTEN=admin_address(server))
    lines = ok(await run("env", env=env)).splitlines()
    assert lines[1] == ("# Compaction sized for 65536 tokens: qwen/qwen3-coder-30b is loaded "
                        "with 65536 tokens of context")
    assert lines[-7:] == ["export API_TIMEOUT_MS=600000",
                          "export ANTHROPIC_MODEL=qwen/qwen3-coder-30b",
                          "export CLAUDE_CODE_SIMPLE_SYSTEM_PROMPT=1",
                          "export CLAUDE_CODE_DISABLE_1M_CONTEXT=1",
                          "export CLAUDE_CODE_MAX_OUTPUT_TOKENS=8192",
                          "export CLAUDE_CODE_MAX_CONTEXT_TOKENS=65536",
                          "export CLAUDE_CODE_AUTO_COMPACT_WINDOW=100000"]
    assert simulate(exports(lines)).threshold == target_threshold(65536)
    names = ok(await run("env", "--claude-names", env=env)).splitlines()
    assert names[-5:] == ["export API_TIMEOUT_MS=600000",
                          "export CLAUDE_CODE_DISABLE_1M_CONTEXT=1",
                          "export CLAUDE_CODE_MAX_OUTPUT_TOKENS=8192",
                          "export CLAUDE_CODE_AUTO_COMPACT_WINDOW=100000",
                          "export CLAUDE_AUTOCOMPACT_PCT_OVERRIDE=48.3"]
    assert simulate(exports(names)).threshold <= target_threshold(65536)
    data = json.loads(ok(await run("env", "--json", "--model", "qwen/qwen3-coder-30b",
                                   env=env)))
    assert list(data) == ["env"]
    assert data["env"]["ANTHROPIC_MODEL"] == "qwen/qwen3-coder-30b"
    assert data["env"]["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == "65536"
    assert "CLAUDE_AUTOCOMPACT_PCT_OVERRIDE" not in data["env"]
    both = await run("env", "--claude-names", "--model", MODEL, env=env)
    assert both.returncode == 2 and b"not allowed with argument" in both.stderr


def exports(lines: list[str]) -> dict[str, str]:
    """The variables ``export`` lines set."""
    return dict(line.removeprefix("export ").split("=", 1) for line in lines
                if line.startswith("export "))


async def test_env_model_refuses_a_model_nobody_serves(start_lmsd, emulator):
    """``lmsd env --model ID`` asks the running lmsd: an id no upstream serves is an
    error naming what is served, and nothing to eval is printed."""
    server = await start_lmsd(emulator.url)
    with trio.fail_after(10):
        while not server.router.backends[0].watcher.models:
            await trio.sleep(0.05)
    env = clean_env(LMSD_ADMIN_LISTEN=admin_address(server),
               LMSD_LISTEN=server.url.removeprefix("http://"))
    for extra in ((), ("--codex",)):
        result = await run("env", *extra, "--model", "qwen/qwen3-coder-3b", env=env)
        assert result.returncode == 1 and result.stdout == b""
        assert result.stderr.decode() == (
            f"lmsd: env --model: no upstream of the lmsd at {server.url} serves the model "
            f"'qwen/qwen3-coder-3b'; it serves: {MODEL}, google/gemma-3-12b\n")
    served = ok(await run("env", "--model", MODEL, env=env))
    assert f"export ANTHROPIC_MODEL={MODEL}" in served.splitlines()


async def test_env_codex_prints_the_config_toml_block(start_lmsd, emulator):
    emulator.models["qwen/qwen3-coder-30b"].context_length = 65536
    server = await start_lmsd(emulator.url)
    with trio.fail_after(10):
        while not server.router.backends[0].watcher.models:
            await trio.sleep(0.05)
    listen = server.url.removeprefix("http://")
    text = ok(await run("env", "--codex", "--listen", listen,
                        env=clean_env(LMSD_ADMIN_LISTEN=admin_address(server))))
    data = tomllib.loads(text)
    assert data["model"] == "qwen/qwen3-coder-30b" and data["model_provider"] == "lmsd"
    assert data["model_context_window"] == 65536
    assert data["model_auto_compact_token_limit"] == 52428
    provider = data["model_providers"]["lmsd"]
    assert provider["base_url"] == server.url + "/v1"
    assert provider["wire_api"] == "responses"


async def test_env_on_a_wildcard_listen_address_points_at_loopback(tmp_path):
    text = ok(await run("env", env=clean_env(LMSD_LISTEN="0.0.0.0:19234")))
    assert "export ANTHROPIC_BASE_URL=http://127.0.0.1:19234" in text.splitlines()
    config = tmp_path / "lmsd.toml"
    config.write_text('listen = "[::]:5555"\n')
    text = ok(await run("env", "--shell", "fish", "--config", str(config)))
    lines = text.splitlines()
    assert lines[0].startswith("# ")
    assert "set -gx ANTHROPIC_BASE_URL http://127.0.0.1:5555" in lines
    assert "set -gx API_TIMEOUT_MS 600000" in lines


async def test_env_needs_no_daemon():
    port = closed_port()
    result = await run("env", env=clean_env(LMSD_ADMIN_LISTEN=f"127.0.0.1:{port}"))
    assert "export ANTHROPIC_BASE_URL=http://127.0.0.1:19234" in ok(result).splitlines()
    result = await run("env", "--json", env=clean_env(LMSD_ADMIN_LISTEN=f"127.0.0.1:{port}"))
    assert result.returncode == 0
    assert json.loads(result.stdout)["env"]["CLAUDE_AUTOCOMPACT_PCT_OVERRIDE"] == "16.34"
    assert result.stderr.decode() == (
        f"lmsd: the daemon is not running (nothing answers at http://127.0.0.1:{port}): "
        f"assuming min_context 32768; run lmsd env again once it runs\n")
