"""Misconfiguration says what to do: the pure parts (settings, errors, the chat adapter)."""

from __future__ import annotations

import pytest

from lmsd import config
from lmsd.config import ConfigError, env_name, load_settings
from lmsd.protocol.chat import ChatStreamAdapter
from lmsd.protocol.stream import StreamConverter

# -- an upstream URL in the OpenAI base-URL form ------------------------------------------------


@pytest.mark.parametrize(("given", "used"), [
    ("http://host:1234/v1", "http://host:1234"),
    ("http://host:1234/v1/", "http://host:1234"),
    ("http://host:1234/V1", "http://host:1234"),
    ("https://gpu.example/lmstudio/v1", "https://gpu.example/lmstudio"),
    ("http://host:1234", "http://host:1234"),
    ("http://host:1234/v10", "http://host:1234/v10"),
])
def test_a_trailing_v1_is_stripped_from_the_upstream(given, used):
    for settings in (load_settings({"upstream": given}, {}),
                     load_settings({}, {"LMSD_UPSTREAM": given})):
        assert settings.upstream == used
        assert bool(settings.notes) == (given != used)
        if settings.notes:
            assert settings.notes[0][0] == "upstream" and "ends in /v1" in settings.notes[0][1]


def test_strip_api_suffix():
    assert config.strip_api_suffix("http://h:1/v1/v1/") == "http://h:1"
    assert config.strip_api_suffix("http://h:1/api/v1x") == "http://h:1/api/v1x"


def test_notes_are_not_a_setting():
    settings = load_settings({"upstream": "http://host:1234/v1"}, {})
    from lmsd.config import redacted

    assert "notes" not in redacted(settings)
    assert load_settings({"upstream": "auto"}, {}).notes == []


# -- the default config file --------------------------------------------------------------------


def _write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_config_file_defaults_to_xdg_config_home(tmp_path):
    path = _write(tmp_path / "xdg" / "lmsd" / "lmsd.toml", 'model = "from-xdg"\n')
    settings = load_settings({}, {"XDG_CONFIG_HOME": str(tmp_path / "xdg"),
                                  "HOME": str(tmp_path / "home")})
    assert (settings.model, settings.config) == ("from-xdg", str(path))


def test_the_config_file_falls_back_to_home_dot_config(tmp_path):
    path = _write(tmp_path / "home" / ".config" / "lmsd" / "lmsd.toml", 'model = "from-home"\n')
    for xdg in ({}, {"XDG_CONFIG_HOME": "relative/is/ignored"}):
        settings = load_settings({}, {"HOME": str(tmp_path / "home"), **xdg})
        assert (settings.model, settings.config) == ("from-home", str(path))


def test_a_missing_default_file_is_fine_and_an_explicit_one_wins(tmp_path):
    env = {"HOME": str(tmp_path / "home")}
    assert load_settings({}, env).config == ""
    _write(tmp_path / "home" / ".config" / "lmsd" / "lmsd.toml", 'model = "default"\n')
    chosen = _write(tmp_path / "chosen.toml", 'model = "chosen"\n')
    assert load_settings({}, {**env, "LMSD_CONFIG": str(chosen)}).model == "chosen"
    assert load_settings({"config": str(chosen)}, env).model == "chosen"
    assert load_settings({}, {**env, "LMSD_MODEL": "env"}).model == "env"  # env beats file


def test_a_bad_default_file_is_a_config_error_naming_it(tmp_path):
    path = _write(tmp_path / "home" / ".config" / "lmsd" / "lmsd.toml", "ping_interval = -1\n")
    with pytest.raises(ConfigError, match=f"config file {path}: ping_interval"):
        load_settings({}, {"HOME": str(tmp_path / "home")})


# -- model_map values ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["5", "true", "''", "{ id = 'x' }", "['a']"])
def test_a_model_map_value_that_is_not_a_model_id_is_refused(tmp_path, value):
    path = _write(tmp_path / "c.toml", f"[model_map]\nhaiku = 'small'\nopus = {value}\n")
    with pytest.raises(ConfigError, match=r"model_map: 'opus' must name a model") as info:
        load_settings({}, {"LMSD_CONFIG": str(path)})
    assert "\n" not in str(info.value)


def test_string_model_map_values_still_load(tmp_path):
    path = _write(tmp_path / "c.toml", "[model_map]\nopus = 'big'\nhaiku = 'small'\n")
    assert load_settings({}, {"LMSD_CONFIG": str(path)}).model_map == {"opus": "big",
                                                                       "haiku": "small"}


# -- an upstream that wants an API key ----------------------------------------------------------

LMS_401 = ("An LM Studio API token is required to make requests to this server, but none was "
           "provided using the Authorization header using the 'Bearer' scheme")


def test_the_key_setting_named_is_the_real_one():
    from lmsd.protocol.auth import API_KEY_ENV

    assert API_KEY_ENV == env_name("upstream_api_key")


@pytest.mark.parametrize("status", [401, 403])
def test_a_missing_key_says_what_to_set(status):
    from lmsd.protocol.auth import key_refused

    err = key_refused(status, LMS_401, key="")
    assert (err.status, err.type) == (403, "permission_error")
    assert err.message.startswith("LM Studio requires an API key: set LMSD_UPSTREAM_API_KEY")


def test_a_refused_key_says_so_without_showing_it():
    from lmsd.protocol.auth import key_refused

    err = key_refused(401, "Incorrect API key provided: sk-lm-secret:abc", key="sk-lm-secret:abc")
    assert (err.status, err.type) == (403, "permission_error")
    assert err.message.startswith("LM Studio refused the API key in LMSD_UPSTREAM_API_KEY "
                                  "(HTTP 401: Incorrect API key provided: ***)")
    assert "secret" not in err.message


# -- a chat answer of HTTP 200 with {"error": ...} ------------------------------------------------

UNEXPECTED = ("Unexpected endpoint or method. (POST /v1/chat/completions). "
              "Returning 200 anyway")


def _client_error(payloads: list[str]) -> tuple[str, str]:
    adapter = ChatStreamAdapter("msg_1")
    converter = StreamConverter(message_id="msg_1", model="claude-x", input_tokens=10,
                                upstream_name="the upstream server")
    events = [e for p in payloads for u in adapter.feed(p) for e in converter.feed(u)]
    events += [e for u in adapter.finish() for e in converter.feed(u)]
    errors = [e["error"] for e in events if e["type"] == "error"]
    assert len(errors) == 1, events
    assert not any(e["type"] == "content_block_start" for e in events)
    return errors[0]["type"], errors[0]["message"]


@pytest.mark.parametrize("payloads", [
    [f'{{"error": "{UNEXPECTED}"}}'],  # a plain answer, or one SSE chunk
    [f'{{"error": "{UNEXPECTED}"}}', "[DONE]"],
    [f'{{"id": "c1", "error": "{UNEXPECTED}", "choices": []}}'],
])
def test_a_200_with_an_error_string_is_an_error_naming_it(payloads):
    kind, message = _client_error(payloads)
    assert kind == "api_error" and UNEXPECTED in message


def test_an_error_object_still_is_an_error():
    kind, message = _client_error(['{"error": {"message": "model crashed", "code": "x"}}'])
    assert kind == "api_error" and "model crashed" in message


def test_an_empty_error_string_beside_choices_is_not_an_error():
    adapter = ChatStreamAdapter("msg_1")
    events = adapter.feed('{"error": "", "choices": [{"delta": {"content": "hi"}}]}')
    assert [e["type"] for e in events] == ["response.created", "response.output_text.delta"]
