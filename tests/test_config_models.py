"""``[[models]]``: a model's command line as an argument list with ``${PORT}`` (llama-swap's
macro), parsed into a ModelProcess; every mistake named."""

from __future__ import annotations

import tomllib

import pytest

from lmsd.config.models import ModelProcess, model_processes

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
    big, small = model_processes(tomllib.loads(TOML)["models"])
    assert big == ModelProcess(
        name="qwen/coder", command=("llama-server", "-m", "/m/q.gguf", "--port", "${PORT}",
                                    "--alias=${PORT}-x"),
        health="/health", health_timeout=30.0, env={"CUDA_VISIBLE_DEVICES": "1"})
    assert big.argv(8123) == ["llama-server", "-m", "/m/q.gguf", "--port", "8123",
                              "--alias=8123-x"]
    assert small.argv(9) == ["llama-server", "--host", "127.0.0.1:9"]
    assert small.health == "/ready" and small.health_timeout == 300.0
    assert small.command[-1] == "127.0.0.1:${PORT}", "the description itself is not changed"


@pytest.mark.parametrize(("entry", "message"), [
    ({"command": ["s", "${PORT}"]}, "missing name"),
    ({"name": "a"}, "missing command"),
    ({"name": "a", "command": "llama-server --port ${PORT}"}, "list of arguments"),
    ({"name": "a", "command": []}, "non-empty list"),
    ({"name": "a", "command": ["s", 8080]}, "non-empty list of strings"),
    ({"name": "a", "command": ["", "${PORT}"]}, "name the program"),
    ({"name": "a", "command": ["llama-server", "--port", "8080"]}, "put ${PORT}"),
    ({"name": "a", "command": ["s", "${PORT}", "${MODEL}"]}, "unknown ${MODEL}"),
    ({"name": "a b", "command": ["s", "${PORT}"]}, "name: use letters"),
    ({"name": "a", "command": ["s", "${PORT}"], "health": "health"}, "health: expected a path"),
    ({"name": "a", "command": ["s", "${PORT}"], "health_timeout": 0}, "positive"),
    ({"name": "a", "command": ["s", "${PORT}"], "health_timeout": True}, "positive"),
    ({"name": "a", "command": ["s", "${PORT}"], "env": {"X": 1}}, "env: expected a table"),
    ({"name": "a", "command": ["s", "${PORT}"], "comand": []}, "did you mean 'command'"),
])
def test_a_wrong_entry_is_named_with_its_key(entry, message):
    with pytest.raises(ValueError, match=r"^\[0\] ") as raised:
        model_processes([entry])
    assert message in str(raised.value)


def test_two_models_of_one_name_are_refused():
    entry = {"name": "a", "command": ["s", "${PORT}"]}
    with pytest.raises(ValueError, match="two \\[\\[models\\]\\] are named 'a'"):
        model_processes([entry, entry])


def test_models_must_be_tables():
    with pytest.raises(ValueError, match="expected \\[\\[models\\]\\] tables"):
        model_processes({"name": "a"})
    with pytest.raises(ValueError, match="expected a table"):
        model_processes(["a"])
