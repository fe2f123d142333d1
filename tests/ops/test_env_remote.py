"""``lmsd env`` for an lmsd on another machine (issue 22): its URL and a client key, the
key written once (``LMSD_API_KEY``, which Codex reads too) and never in a comment."""

from __future__ import annotations

import os
import sys
import tomllib

import pytest
import trio

from lmsd.config import load_settings
from lmsd.ops.client import ClientError
from lmsd.ops.codex_env import codex_config
from lmsd.ops.env import LiveContext, Target, format_env, target

KEY = "laptop-key-0123456789abcdef"
URL = "https://gpu-box:19234"


def settings(**flags: str):
    return load_settings({"client_keys": f"laptop={KEY}", **flags}, {})


def test_the_url_and_a_named_key_from_this_machines_config():
    to = target(settings(), f"{URL}/v1/", "laptop", environ={})
    assert to == Target(URL, KEY)
    with pytest.raises(ClientError, match=r"no client key named 'desk' in client_keys "
                                          r"\(known: laptop\)"):
        target(settings(), URL, "desk", environ={})
    with pytest.raises(ClientError, match="expected http"):
        target(settings(), "gpu-box:19234", None, environ={})


def test_the_laptops_environment_gives_url_and_key():
    to = target(load_settings({}, {}), None, None,
                environ={"LMSD_URL": URL, "LMSD_API_KEY": KEY})
    assert to == Target(URL, KEY, key_in_env=True)
    assert target(load_settings({}, {}), None, None, environ={}) == Target(
        "http://127.0.0.1:19234")


def test_a_tls_lmsd_is_https_by_default(tmp_path):
    for name in ("c.pem", "k.pem"):
        (tmp_path / name).write_text("-----BEGIN X-----\n")
    tls = load_settings({"tls_cert": str(tmp_path / "c.pem"),
                         "tls_key": str(tmp_path / "k.pem")}, {})
    assert target(tls, None, None, environ={}).url == "https://127.0.0.1:19234"


def test_claude_code_sends_the_key_written_once():
    context = LiveContext(32768, "assumed", assumed=True)
    lines = format_env(settings(), "sh", context, to=Target(URL, KEY)).splitlines()
    assert [line for line in lines if KEY in line] == [f"export LMSD_API_KEY={KEY}"]
    assert f"export ANTHROPIC_BASE_URL={URL}" in lines
    assert 'export ANTHROPIC_AUTH_TOKEN="$LMSD_API_KEY"' in lines
    fish = format_env(settings(), "fish", context, to=Target(URL, KEY)).splitlines()
    assert "set -gx ANTHROPIC_AUTH_TOKEN $LMSD_API_KEY" in fish
    assert [line for line in fish if KEY in line] == [f"set -gx LMSD_API_KEY {KEY}"]
    from_env = format_env(settings(), "sh", context, to=Target(URL, KEY, key_in_env=True))
    assert KEY not in from_env and 'ANTHROPIC_AUTH_TOKEN="$LMSD_API_KEY"' in from_env


def test_settings_json_carries_the_key_itself():
    import json

    data = json.loads(format_env(settings(), "json", None, to=Target(URL, KEY)))
    assert data["env"]["ANTHROPIC_AUTH_TOKEN"] == KEY
    assert data["env"]["ANTHROPIC_BASE_URL"] == URL


def test_codex_reads_the_key_from_its_env_key():
    text = codex_config(settings(), None, "qwen", Target(URL, KEY))
    assert KEY not in text
    provider = tomllib.loads(text)["model_providers"]["lmsd"]
    assert provider == {"name": "lmsd", "base_url": f"{URL}/v1", "wire_api": "responses",
                        "env_key": "LMSD_API_KEY"}
    assert "env_key" not in codex_config(settings(), None, "qwen", Target(URL))


async def test_lmsd_env_for_a_remote_lmsd_evaluates_in_sh(tmp_path):
    config = tmp_path / "lmsd.toml"
    config.write_text(f'admin_listen = "127.0.0.1:9"\n[client_keys]\nlaptop = "{KEY}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMSD_")}
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-m", "lmsd", "env", "--config", str(config), "--url", URL,
             "--key-name", "laptop"], capture_stdout=True, capture_stderr=True, env=env)
    text = done.stdout.decode()
    assert KEY not in "".join(line for line in text.splitlines() if line.startswith("#"))
    shell = await trio.run_process(
        ["sh", "-c", 'eval "$1"; printf "%s %s" "$ANTHROPIC_BASE_URL" "$ANTHROPIC_AUTH_TOKEN"',
         "sh", text], capture_stdout=True)
    assert shell.stdout.decode() == f"{URL} {KEY}"
