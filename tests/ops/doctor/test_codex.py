"""``lmsd doctor``'s Codex check: Codex CLI's config.toml against lmsd's address and the
loaded context (``lmsd/ops/doctor/codex.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from lmsd.config import Settings, load_settings
from lmsd.ops import doctor
from lmsd.ops.codex_env import codex_config
from lmsd.ops.doctor import diagnose
from lmsd.ops.doctor.codex import CHECK, check_codex, config_path
from lmsd.ops.env import LiveContext
from tests.ops.doctor.support import (  # isolated: autouse, no real LM Studio leaks in
    doctor_args,
    isolated,  # noqa: F401
    prepare_shell,
    settings_for,
    shell,
)

LISTEN = "127.0.0.1:19234"
CONTEXT = 32768
GOOD = codex_config(load_settings({"listen": LISTEN}, {}),
                    LiveContext(CONTEXT, "a test context", model="qwen/qwen3-coder-30b"))


@pytest.fixture
def settings() -> Settings:
    return load_settings({"listen": LISTEN}, {})


def home_with(tmp_path: Path, text: str) -> dict[str, str]:
    """A shell whose ``~/.codex/config.toml`` is ``text``."""
    path = tmp_path / "home" / ".codex" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return {"HOME": str(tmp_path / "home")}


def provider(base_url: str = f"http://{LISTEN}/v1", name: str = "lmsd", **keys: object) -> str:
    lines = [f"[model_providers.{name}]", 'name = "lmsd"', f"base_url = {json.dumps(base_url)}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


TOP = (f'model_provider = "lmsd"\nmodel_context_window = {CONTEXT}\n'
       f"model_auto_compact_token_limit = {int(CONTEXT * 0.8)}\n")


def test_config_path_follows_codex_home():
    assert config_path({"HOME": "/home/u"}) == Path("/home/u/.codex/config.toml")
    assert config_path({"HOME": "/home/u", "CODEX_HOME": "/srv/codex"}) == \
        Path("/srv/codex/config.toml")


def test_no_config_is_skipped(tmp_path, settings):
    result = check_codex(settings, {"HOME": str(tmp_path)}, [CONTEXT])
    assert result.status == "skip" and result.fix is None
    assert str(tmp_path / ".codex" / "config.toml") in result.detail
    assert "lmsd env --codex" in result.detail


def test_codex_home_is_read(tmp_path, settings):
    (tmp_path / "codex").mkdir()
    (tmp_path / "codex" / "config.toml").write_text(GOOD)
    env = {"HOME": str(tmp_path / "nobody"), "CODEX_HOME": str(tmp_path / "codex")}
    assert check_codex(settings, env, [CONTEXT]).status == "ok"


def test_what_lmsd_env_codex_prints_passes(tmp_path, settings):
    result = check_codex(settings, home_with(tmp_path, GOOD), [CONTEXT, 65536])
    assert result.status == "ok" and result.fix is None, result
    assert result.detail == (f"{config_path(home_with(tmp_path, GOOD))}: [model_providers"
                             f".lmsd] points at lmsd (wire_api \"responses\"); Codex compacts "
                             f"at 26214 of a {CONTEXT}-token window; the loaded context is "
                             f"{CONTEXT}")


def test_providers_elsewhere_are_skipped(tmp_path, settings):
    text = (provider("http://127.0.0.1:1234/v1", name="lmstudio", wire_api="chat")
            + provider("https://api.openai.com/v1", name="openai"))
    result = check_codex(settings, home_with(tmp_path, text), [CONTEXT])
    assert result.status == "skip" and result.fix is None
    assert f"no model provider pointing at lmsd (http://{LISTEN}/v1)" in result.detail


def test_wire_api_chat_fails(tmp_path, settings):
    text = TOP + provider("http://localhost:19234/v1", wire_api="chat")  # localhost is lmsd
    result = check_codex(settings, home_with(tmp_path, text), [CONTEXT])
    assert result.status == "fail"
    assert 'wire_api = "chat": Codex 0.171 refuses it' in result.detail
    assert result.fix is not None and result.fix.startswith("lmsd env --codex")


def test_wire_api_defaults_to_responses(tmp_path, settings):
    result = check_codex(settings, home_with(tmp_path, TOP + provider()), [CONTEXT])
    assert result.status == "ok", result


def test_base_url_without_v1_fails(tmp_path, settings):
    text = TOP + provider(f"http://{LISTEN}", wire_api="responses")
    result = check_codex(settings, home_with(tmp_path, text), [CONTEXT])
    assert result.status == "fail" and "must end in /v1" in result.detail


@pytest.mark.parametrize(("top", "says"), [
    ('model_provider = "lmsd"\n', ["model_context_window is not set",
                                   "model_auto_compact_token_limit is not set"]),
    ('model_provider = "lmsd"\nmodel_context_window = 65536\n'
     "model_auto_compact_token_limit = 52000\n",
     [f"model_context_window = 65536 is larger than the loaded context ({CONTEXT}): Codex "
      "compacts too late",
      f"model_auto_compact_token_limit = 52000 is not below the loaded context ({CONTEXT})"]),
    (f'model_provider = "lmsd"\nmodel_context_window = {CONTEXT}\n'
     f"model_auto_compact_token_limit = {CONTEXT}\n",
     [f"model_auto_compact_token_limit = {CONTEXT} is not below model_context_window "
      f"({CONTEXT})"]),
    ('model_provider = "lmsd"\nmodel_context_window = 16384\n',
     ["model_auto_compact_token_limit is not set"]),
], ids=["neither", "window-too-large", "limit-not-below", "no-limit"])
def test_context_window_and_compaction_limit_warn(tmp_path, settings, top, says):
    text = top + provider(wire_api="responses")
    result = check_codex(settings, home_with(tmp_path, text), [CONTEXT])
    assert result.status == "warn", result
    for said in says:
        assert said in result.detail
    assert result.detail.count(";") == len(says) - 1  # nothing else is said
    assert result.fix is not None and "lmsd env --codex" in result.fix


def test_a_failure_outranks_a_warning(tmp_path, settings):
    text = 'model_provider = "lmsd"\n' + provider(wire_api="chat")
    result = check_codex(settings, home_with(tmp_path, text), [CONTEXT])
    assert result.status == "fail"
    assert "wire_api" in result.detail and "model_context_window is not set" in result.detail


def test_a_profile_that_selects_lmsd_is_what_counts(tmp_path, settings):
    """Top level for OpenAI; ``--profile local`` uses lmsd with its own window."""
    text = ('model_provider = "openai"\nmodel_context_window = 200000\n'
            "[profiles.local]\nmodel_provider = \"lmsd\"\n"
            f"model_context_window = {CONTEXT}\nmodel_auto_compact_token_limit = 26000\n"
            "[profiles.big]\nmodel_provider = \"lmsd\"\nmodel_context_window = 131072\n"
            "model_auto_compact_token_limit = 100000\n" + provider())
    result = check_codex(settings, home_with(tmp_path, text), [CONTEXT])
    assert result.status == "warn", result
    assert result.detail.count("[profiles.big] model_context_window = 131072 is larger") == 1
    assert "[profiles.local]" not in result.detail and "200000" not in result.detail


def test_an_unknown_loaded_context_is_not_compared(tmp_path, settings):
    result = check_codex(settings, home_with(tmp_path, GOOD), [])
    assert result.status == "ok" and "loaded context is unknown" in result.detail


def test_a_broken_config_warns(tmp_path, settings):
    result = check_codex(settings, home_with(tmp_path, "model_providers = [\n"), [CONTEXT])
    assert result.status == "warn" and "cannot read" in result.detail
    result = check_codex(settings, home_with(tmp_path, "model_providers = 3\n"), [CONTEXT])
    assert result.status == "skip"


async def test_through_diagnose_against_the_loaded_context(emulator, tmp_path):
    """The emulator loads 32768 tokens: a window of 65536 compacts too late."""
    settings = settings_for(tmp_path, emulator.url)
    port = settings.listen.rpartition(":")[2]
    text = ('model_provider = "lmsd"\nmodel_context_window = 65536\n'
            "model_auto_compact_token_limit = 30000\n"
            + provider(f"http://127.0.0.1:{port}/v1", wire_api="responses"))
    env = {**shell(tmp_path, settings), **home_with(tmp_path, text)}
    result = next(r for r in await diagnose(settings, env) if r.check == CHECK)
    assert result.status == "warn"
    assert "65536 is larger than the loaded context (32768)" in result.detail


async def test_doctor_exits_1_on_wire_api_chat(emulator, tmp_path, monkeypatch, capsys):
    settings = settings_for(tmp_path, emulator.url)
    prepare_shell(tmp_path, monkeypatch, settings)
    codex_home = tmp_path / "codex-home"
    codex_home.mkdir()
    port = settings.listen.rpartition(":")[2]
    (codex_home / "config.toml").write_text(
        TOP + provider(f"http://127.0.0.1:{port}/v1", wire_api="chat"))
    monkeypatch.setenv("CODEX_HOME", str(codex_home))
    args = doctor_args(upstream=emulator.url, listen=settings.listen,
                       admin_listen=settings.admin_listen)
    code = await trio.to_thread.run_sync(doctor.run, args)
    line = next(x for x in capsys.readouterr().out.splitlines() if " codex config " in x)
    assert code == 1
    assert line.startswith("FAIL codex config ") and "; fix: lmsd env --codex" in line
