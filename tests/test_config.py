"""Settings: precedence (flags over env over file), values checked and named, secrets redacted,
the default config file, the allow lists."""

import pytest

from lmsd import config
from lmsd.config import ConfigError, load_settings, redacted


def test_precedence_flags_over_env_over_file(tmp_path):
    cfg = tmp_path / "lmsd.toml"
    cfg.write_text('ping_interval = 3\nmodel = "from-file"\nlisten = "127.0.0.1:1"\n'
                   '[model_map]\nhaiku = "small"\n')
    env = {"LMSD_CONFIG": str(cfg), "LMSD_MODEL": "from-env", "LMSD_LISTEN": "127.0.0.1:2"}
    s = load_settings({"listen": "127.0.0.1:3"}, env)
    assert (s.listen, s.model, s.ping_interval) == ("127.0.0.1:3", "from-env", 3.0)
    assert s.model_map == {"haiku": "small"}
    assert load_settings({}, {"LMSD_MODEL_MAP": "opus=a, haiku=b"}).model_map == {
        "opus": "a", "haiku": "b"}


@pytest.mark.parametrize(("flags", "env", "file", "key"), [
    ({"ping_interval": "soon"}, {}, "", "ping_interval"),
    ({}, {"LMSD_LISTEN": "nohost"}, "", "LMSD_LISTEN"),
    ({}, {"LMSD_UPSTREAM": "ftp://x"}, "", "LMSD_UPSTREAM"),
    ({}, {}, "ping_interval = -1", "ping_interval"),
    ({}, {}, "strip_billing_header = 'maybe'", "strip_billing_header"),
    ({}, {}, "colour = 'blue'", "colour"),
    ({}, {}, "this is not toml", "invalid TOML"),
])
def test_bad_values_name_the_key(tmp_path, flags, env, file, key):
    if file:
        path = tmp_path / "c.toml"
        path.write_text(file)
        env = {**env, "LMSD_CONFIG": str(path)}
    with pytest.raises(ConfigError, match=key):
        load_settings(flags, env)


def test_secrets_are_redacted():
    s = load_settings({}, {"LMSD_ADMIN_TOKEN": "hunter2", "LMSD_UPSTREAM_API_KEY": "k"})
    shown = redacted(s)
    assert "hunter2" not in repr(shown) and shown["admin_token"] == "***"


def test_settings_from_file_env_and_flags(tmp_path):
    config = tmp_path / "lmsd.toml"
    config.write_text('allowed_hosts = ["gpu-box", "*.lan"]\n'
                      'allowed_origins = ["http://localhost:3000"]\n')
    settings = load_settings({"config": str(config)}, {})
    assert settings.allowed_hosts == ["gpu-box", "*.lan"]
    assert settings.allowed_origins == ["http://localhost:3000"]
    settings = load_settings({"config": str(config)},
                             {"LMSD_ALLOWED_HOSTS": "a.example,b.example"})
    assert settings.allowed_hosts == ["a.example", "b.example"]
    settings = load_settings({"config": str(config), "allowed_origins": "https://x.example"},
                             {"LMSD_ALLOWED_ORIGINS": "https://y.example"})
    assert settings.allowed_origins == ["https://x.example"]
    assert load_settings({}, {}).allowed_hosts == []


def test_bad_allow_list_settings_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"LMSD_ALLOWED_HOSTS.*box:80"):
        load_settings({}, {"LMSD_ALLOWED_HOSTS": "box:80"})
    with pytest.raises(ConfigError, match=r"allowed_origins.*example\.com"):
        load_settings({"allowed_origins": "example.com"}, {})
    config = tmp_path / "lmsd.toml"
    config.write_text("allowed_hosts = [1, 2]\n")
    with pytest.raises(ConfigError, match="allowed_hosts: expected a list of strings"):
        load_settings({"config": str(config)}, {})


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


TWO_BOXES = '''
background_upstream = "laptop"

[[upstreams]]
name = "desktop"
url = "http://192.168.1.20:1234/v1"
kind = "lmstudio"
weight = 2
max_concurrent = 4
model_map = { opus = "qwen/qwen3-coder-480b" }

[[upstreams]]
name = "laptop"
url = "http://127.0.0.1:8080"
kind = "messages"
api_key = "sk-local"
models = ["qwen2.5-coder-7b"]
model = "qwen2.5-coder-7b"
'''


def test_several_upstreams_from_the_config_file(tmp_path):
    path = _write(tmp_path / "lmsd.toml", TWO_BOXES)
    settings = load_settings({"config": str(path)}, {})
    desktop, laptop = settings.upstream_list()
    assert (desktop.name, desktop.url, desktop.kind, desktop.weight, desktop.max_concurrent) \
        == ("desktop", "http://192.168.1.20:1234", "lmstudio", 2.0, 4)
    assert desktop.model_map == {"opus": "qwen/qwen3-coder-480b"}
    assert (laptop.kind, laptop.models, laptop.model) == (
        "messages", ["qwen2.5-coder-7b"], "qwen2.5-coder-7b")
    assert settings.background_upstream == "laptop"
    shown = redacted(settings)["upstreams"]
    assert shown[1]["api_key"] == "***" and "sk-local" not in str(redacted(settings))


def test_one_upstream_keeps_working_as_before():
    settings = load_settings({"upstream": "http://h:1234", "upstream_api": "chat"}, {})
    [only] = settings.upstream_list()
    assert (only.name, only.url, only.kind) == ("h:1234", "http://h:1234", "chat")
    assert load_settings({}, {}).upstream_list()[0].name == "lmstudio"


def test_upstream_given_several_times_or_comma_separated():
    flags = load_settings({"upstream": ["http://a:1/v1", "http://b:2"]}, {})
    assert [u.url for u in flags.upstream_list()] == ["http://a:1", "http://b:2"]
    assert [u.name for u in flags.upstream_list()] == ["a:1", "b:2"]
    env = load_settings({}, {"LMSD_UPSTREAM": "http://a:1,http://b:2"})
    assert [u.name for u in env.upstream_list()] == ["a:1", "b:2"]
    once = load_settings({"upstream": ["http://a:1"]}, {})
    assert once.upstream == "http://a:1" and not once.upstreams


@pytest.mark.parametrize("text, message", [
    ('[[upstreams]]\nname = "x"\n', "[0] missing url"),
    ('[[upstreams]]\nurl = "ftp://x"\n', "expected an http(s) URL"),
    ('[[upstreams]]\nurl = "http://x:1"\nkind = "grpc"\n', "kind: expected one of auto"),
    ('[[upstreams]]\nurl = "http://x:1"\nwieght = 2\n', "unknown key 'wieght'"),
    ('[[upstreams]]\nurl = "http://x:1"\nweight = 0\n', "weight: must be positive"),
    ('[[upstreams]]\nurl = "http://x:1"\nname = "a b"\n', "name: use letters"),
    ('[[upstreams]]\nurl = "http://x:1"\n[[upstreams]]\nurl = "http://x:1"\n',
     "two upstreams are named 'x:1'"),
    ('background_upstream = "gpu"\n[[upstreams]]\nurl = "http://x:1"\n',
     "background_upstream: 'gpu' is not an upstream (there are: x:1)"),
])
def test_a_bad_upstream_entry_names_what_is_wrong(tmp_path, text, message):
    path = _write(tmp_path / "lmsd.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_settings({"config": str(path)}, {})
    assert message in str(caught.value)


@pytest.mark.parametrize("text, message", [
    ("min_contxt = 65536\n", "unknown key 'min_contxt'; did you mean 'min_context'?"),
    ("upstream-api-kye = 'x'\n", "did you mean 'upstream_api_key'?"),
    ('[[upstreams]]\nurl = "http://x:1"\nwieght = 2\n', "'wieght'; did you mean 'weight'?"),
])
def test_a_misspelt_key_gets_the_nearest_one_suggested(tmp_path, text, message):
    path = _write(tmp_path / "lmsd.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_settings({"config": str(path)}, {})
    assert message in str(caught.value)


def test_a_key_like_no_other_gets_no_suggestion(tmp_path):
    path = _write(tmp_path / "lmsd.toml", "foo_bar = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_settings({"config": str(path)}, {})
    assert str(caught.value).endswith("unknown key 'foo_bar'")
