"""``[[models]]``: a model's command line as an argument list with ``${PORT}`` (llama-swap's
macro), parsed into a ModelEntry; every mistake named."""

from __future__ import annotations

import tomllib

import pytest

from lmsd.config import ConfigError, configured_upstreams, load_settings
from lmsd.config.models import ModelEntry, model_entries

TOML = """
[[models]]
name = "qwen/coder"
command = ["llama-server", "-m", "/m/q.gguf", "--port", "${PORT}", "--alias=${PORT}-x"]
health_timeout = 30
env = { CUDA_VISIBLE_DEVICES = "1" }

[[models]]
name = "small"
command = ["llama-server", "--host", "127.0.0.1:${PORT}"]
health = "/ready"
"""


def test_a_models_table_becomes_processes_with_their_port_filled_in():
    big, small = model_entries(tomllib.loads(TOML)["models"])
    assert big == ModelEntry(
        name="qwen/coder", command=("llama-server", "-m", "/m/q.gguf", "--port", "${PORT}",
                                    "--alias=${PORT}-x"),
        health="/health", health_timeout=30.0, env={"CUDA_VISIBLE_DEVICES": "1"})
    assert big.argv(8123) == ["llama-server", "-m", "/m/q.gguf", "--port", "8123",
                              "--alias=8123-x"]
    assert small.argv(9) == ["llama-server", "--host", "127.0.0.1:9"]
    assert small.health == "/ready" and small.health_timeout == 300.0
    assert small.command[-1] == "127.0.0.1:${PORT}", "the description itself is not changed"


def test_a_model_an_upstream_loads_needs_no_command_and_says_how_it_shares_the_box():
    (entry,) = model_entries(tomllib.loads("""
[[models]]
name = "qwen/qwen3-coder-30b"
memory = "18GiB"
group = "main"
ttl = 0
pinned = true
""")["models"])
    assert entry == ModelEntry(name="qwen/qwen3-coder-30b", memory=18 * 1024**3, group="main",
                               ttl=0.0, pinned=True)
    assert not entry.started and entry.memory_bytes() == 18 * 1024**3
    (plain,) = model_entries([{"name": "small", "memory": "1.5 GB"}])
    assert plain.memory == 1_500_000_000 and plain.ttl is None and plain.group == ""


def test_a_started_models_memory_defaults_to_its_model_files_size(tmp_path):
    weights = tmp_path / "m.gguf"
    weights.write_bytes(b"x" * 4096)
    (by_flag, by_equals, missing) = model_entries([
        {"name": "a", "command": ["llama-server", "-m", str(weights), "--port", "${PORT}"]},
        {"name": "b", "command": ["llama-server", f"--model={weights}", "--port", "${PORT}"]},
        {"name": "c", "command": ["llama-server", "-m", str(tmp_path / "gone.gguf"),
                                  "--port", "${PORT}"]}])
    assert by_flag.started and by_flag.memory_bytes() == 4096
    assert by_equals.memory_bytes() == 4096
    assert missing.memory_bytes() == 0, "unknown, not an error: the engine will say"
    given = ModelEntry(name="d", command=by_flag.command, memory=10)
    assert given.memory_bytes() == 10, "a configured memory wins over the file"


@pytest.mark.parametrize(("entry", "message"), [
    ({"command": ["s", "${PORT}"]}, "missing name"),
    ({"name": "a", "health": "/x"}, "health: only for a model lmsd starts"),
    ({"name": "a", "memory": "18 parsecs"}, "memory: expected a size"),
    ({"name": "a", "memory": -1}, "memory: must be 0 or more"),
    ({"name": "a", "ttl": -5}, "ttl: expected seconds (0 (never) or more)"),
    ({"name": "a", "ttl": "1h"}, "ttl: expected seconds"),
    ({"name": "a", "pinned": "maybe"}, "pinned: expected true or false"),
    ({"name": "a", "group": "a b"}, "group: use letters"),
    ({"name": "a", "command": "llama-server --port ${PORT}"}, "list of arguments"),
    ({"name": "a", "command": []}, "non-empty list"),
    ({"name": "a", "command": ["s", 8080]}, "non-empty list of strings"),
    ({"name": "a", "command": ["", "${PORT}"]}, "name the program"),
    ({"name": "a", "command": ["llama-server", "--port", "8080"]}, "put ${PORT}"),
    ({"name": "a", "command": ["s", "${PORT}", "${MODEL}"]}, "unknown ${MODEL}"),
    ({"name": "a b", "command": ["s", "${PORT}"]}, "name: use letters"),
    ({"name": "a", "command": ["s", "${PORT}"], "health": "health"}, "health: expected a path"),
    ({"name": "a", "command": ["s", "${PORT}"], "health_timeout": 0}, "positive number"),
    ({"name": "a", "command": ["s", "${PORT}"], "health_timeout": True}, "positive number"),
    ({"name": "a", "command": ["s", "${PORT}"], "env": {"X": 1}}, "env: expected a table"),
    ({"name": "a", "command": ["s", "${PORT}"], "comand": []}, "did you mean 'command'"),
])
def test_a_wrong_entry_is_named_with_its_key(entry, message):
    with pytest.raises(ValueError, match=r"^\[0\] ") as raised:
        model_entries([entry])
    assert message in str(raised.value)


def test_two_models_of_one_name_are_refused():
    entry = {"name": "a", "command": ["s", "${PORT}"]}
    with pytest.raises(ValueError, match="two \\[\\[models\\]\\] are named 'a'"):
        model_entries([entry, entry])


def test_models_must_be_tables():
    with pytest.raises(ValueError, match="expected \\[\\[models\\]\\] tables"):
        model_entries({"name": "a"})
    with pytest.raises(ValueError, match="expected a table"):
        model_entries(["a"])


def test_a_started_model_named_as_an_upstream_stops_startup_naming_both(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[[upstreams]]\nname = "coder"\nurl = "http://127.0.0.1:8080"\n'
                    '[[models]]\nname = "coder"\n'
                    'command = ["llama-server", "--port", "${PORT}"]\n')
    with pytest.raises(ConfigError) as raised:
        load_settings({"config": str(path)}, {})
    message = str(raised.value)
    assert "[[models]] 'coder'" in message and "upstream 'coder' at http://127.0.0.1:8080" \
        in message


def test_a_started_model_may_share_its_name_with_a_model_an_upstream_serves(tmp_path):
    """Only the upstream's name counts: one it serves a model of the same name is fine."""
    path = tmp_path / "config.toml"
    path.write_text('[[upstreams]]\nname = "box"\nurl = "http://127.0.0.1:8080"\n'
                    'models = ["coder"]\n[[models]]\nname = "coder"\n'
                    'command = ["llama-server", "--port", "${PORT}"]\n')
    settings = load_settings({"config": str(path)}, {})
    assert [u.name for u in configured_upstreams(settings)] == ["box"]


def test_background_upstream_cannot_name_the_lm_studio_started_models_replace(tmp_path):
    """With only started models, ``auto`` is looked for nowhere: its name is no upstream."""
    path = tmp_path / "config.toml"
    path.write_text('background_upstream = "lmstudio"\n[[models]]\nname = "small"\n'
                    'command = ["llama-server", "--port", "${PORT}"]\n')
    with pytest.raises(ConfigError, match=r"'lmstudio' is not an upstream \(there are: small\)"):
        load_settings({"config": str(path)}, {})
