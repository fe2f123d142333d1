"""Claude Code's compaction arithmetic (2.1.329) and the environment lmsd env prints."""

from __future__ import annotations

import pytest

from lmsd.protocol.clients.compaction import (
    claude_code_env,
    env_problem,
    max_output,
    simulate,
    target_threshold,
)

LOCAL = "qwen/qwen3-coder-30b"


@pytest.mark.parametrize(("env", "model", "window", "threshold"), [
    # what /context showed in the TUI (window, and the autocompact buffer = window - threshold)
    ({}, "claude-opus-5-5", 1_000_000, 967_000),
    ({"CLAUDE_CODE_DISABLE_1M_CONTEXT": "1"}, "claude-opus-5-5", 200_000, 167_000),
    ({"CLAUDE_CODE_DISABLE_1M_CONTEXT": "1", "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "4096",
      "CLAUDE_CODE_AUTO_COMPACT_WINDOW": "100000"}, "claude-opus-5-5", 200_000, 82_904),
    ({"CLAUDE_CODE_MAX_OUTPUT_TOKENS": "4096", "CLAUDE_CODE_MAX_CONTEXT_TOKENS": "32768"},
     LOCAL, 32_768, 15_672),
    # the window for non-catalog ids only; claude-* names ignore it
    ({"CLAUDE_CODE_MAX_CONTEXT_TOKENS": "32768", "CLAUDE_CODE_DISABLE_1M_CONTEXT": "1"},
     "claude-sonnet-4-6", 200_000, 167_000),
    # the auto-compact window has a 100k floor
    ({"CLAUDE_CODE_AUTO_COMPACT_WINDOW": "32k", "CLAUDE_CODE_DISABLE_1M_CONTEXT": "1"},
     "claude-sonnet-4-6", 200_000, 67_000),
    # a percentage lowers the threshold, never raises it
    ({"CLAUDE_AUTOCOMPACT_PCT_OVERRIDE": "50", "CLAUDE_CODE_DISABLE_1M_CONTEXT": "1"},
     "claude-sonnet-4-6", 200_000, 90_000),
    ({"CLAUDE_AUTOCOMPACT_PCT_OVERRIDE": "99", "CLAUDE_CODE_DISABLE_1M_CONTEXT": "1"},
     "claude-sonnet-4-6", 200_000, 167_000),
])
def test_simulate_replays_claude_codes_arithmetic(env, model, window, threshold):
    got = simulate(env, model)
    assert (got.window, got.threshold) == (window, threshold)


@pytest.mark.parametrize(("context", "out", "target"), [
    (32768, 4096, 15672), (65536, 8192, 44344), (131072, 16384, 101688),
    (262144, 32000, 229144)])
def test_target_is_claude_codes_own_formula_on_the_loaded_context(context, out, target):
    assert max_output(context) == out
    assert target_threshold(context) == context - min(out, 20000) - 13000 == target


@pytest.mark.parametrize("context", [32768, 65536, 131072, 262144])
@pytest.mark.parametrize("model", [None, "claude-sonnet-4-6", "claude-haiku-4-5", LOCAL])
def test_claude_names_env_compacts_before_the_context_overflows(context, model):
    """The default ``lmsd env`` suits Claude names and a ``/model`` switch to a local id."""
    got = simulate(claude_code_env(context), model)
    want = target_threshold(context)
    if model != LOCAL:  # Claude names stay at the 200k window CLAUDE_CODE_DISABLE_1M pins
        want = min(want, 167_000)
    assert want * 0.99 <= got.threshold <= want
    assert got.threshold + max_output(context) < context
    assert env_problem({**claude_code_env(context), "ANTHROPIC_MODEL": model or ""},
                       context) is None


@pytest.mark.parametrize("context", [32768, 65536, 131072])
def test_local_id_env_shows_the_real_window(context):
    env = claude_code_env(context, LOCAL)
    got = simulate(env, LOCAL)
    assert got.window == context  # what /context shows
    assert got.threshold == target_threshold(context)
    assert "CLAUDE_AUTOCOMPACT_PCT_OVERRIDE" not in env  # it would shrink the real window


def test_env_at_32k_and_64k():
    assert claude_code_env(32768) == {
        "CLAUDE_CODE_DISABLE_1M_CONTEXT": "1", "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "4096",
        "CLAUDE_CODE_AUTO_COMPACT_WINDOW": "100000", "CLAUDE_AUTOCOMPACT_PCT_OVERRIDE": "16.34"}
    assert claude_code_env(65536)["CLAUDE_AUTOCOMPACT_PCT_OVERRIDE"] == "48.3"
    assert claude_code_env(65536, LOCAL) == {
        "CLAUDE_CODE_DISABLE_1M_CONTEXT": "1", "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "8192",
        "CLAUDE_CODE_MAX_CONTEXT_TOKENS": "65536", "CLAUDE_CODE_AUTO_COMPACT_WINDOW": "100000"}


def test_env_problem_names_too_late_and_too_early():
    late = env_problem({}, 32768)
    assert late is not None and "compact at 967000 tokens" in late and "overflows" in late
    early = env_problem({"CLAUDE_AUTOCOMPACT_PCT_OVERRIDE": "1",
                         "CLAUDE_CODE_DISABLE_1M_CONTEXT": "1"}, 65536)
    assert early is not None and "far below" in early
