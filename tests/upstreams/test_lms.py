import json
import os
from pathlib import Path

import pytest
import trio

from lmsd.upstreams.lms import LmsCli, LmsError, LmsNotFound
from tests.support.fake_lms import calls, fake_lms

STATUS = '{"running":true,"port":1234}\n'
PS = json.dumps([
    {"type": "llm", "identifier": "qwen3", "modelKey": "qwen/qwen3-30b", "contextLength": 32768,
     "maxContextLength": 262144, "parallel": 4, "status": "idle"},
]) + "\n"


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


# -- commands and their argv --------------------------------------------------------------------

async def test_server_status_argv_and_json(tmp_path):
    lms = fake_lms(tmp_path / "bin", stdout=STATUS)
    cli = LmsCli(str(lms))
    assert cli.available
    assert await cli.server_status() == {"running": True, "port": 1234}
    assert calls(lms) == [["server", "status", "--json", "--quiet"]]


async def test_server_status_not_running_and_noise(tmp_path):
    lms = fake_lms(tmp_path / "bin", stdout='notice: update available\n{"running":false,'
                   '"port":null}\n')
    assert await LmsCli(str(lms)).server_status() == {"running": False, "port": None}


@pytest.mark.parametrize("stdout", ["", "garbage\n", "[1, 2]\n"])
async def test_server_status_without_a_json_object_is_none(tmp_path, stdout):
    lms = fake_lms(tmp_path / "bin", stdout=stdout)
    assert await LmsCli(str(lms)).server_status() is None


async def test_ps_argv_and_entries(tmp_path):
    lms = fake_lms(tmp_path / "bin", stdout=PS)
    entries = await LmsCli(str(lms)).ps()
    assert calls(lms) == [["ps", "--json"]]
    assert [(e["identifier"], e["modelKey"], e["contextLength"]) for e in entries] == [
        ("qwen3", "qwen/qwen3-30b", 32768)
    ]


async def test_ps_garbage_raises(tmp_path):
    lms = fake_lms(tmp_path / "bin", stdout="No models are loaded\n")
    with pytest.raises(LmsError, match="JSON list"):
        await LmsCli(str(lms)).ps()


async def test_load_argv_with_and_without_identifier(tmp_path):
    lms = fake_lms(tmp_path / "bin")
    cli = LmsCli(str(lms))
    await cli.load("qwen/qwen3-30b", context_length=65536)
    await cli.load("qwen/qwen3-30b", context_length=8192, identifier="qwen-small")
    assert calls(lms) == [
        ["load", "qwen/qwen3-30b", "--exact", "-c", "65536", "-y"],
        ["load", "qwen/qwen3-30b", "--exact", "-c", "8192", "-y", "--identifier", "qwen-small"],
    ]


async def test_unload_argv(tmp_path):
    lms = fake_lms(tmp_path / "bin")
    await LmsCli(str(lms)).unload("qwen-small")
    assert calls(lms) == [["unload", "qwen-small"]]


async def test_non_zero_exit_raises_with_the_last_stderr_line(tmp_path):
    lms = fake_lms(tmp_path / "bin", stderr="Loading...\n\x1b[31mError: no model 'x'\x1b[0m\n\n",
                   code=1)
    with pytest.raises(LmsError, match=r"exit 1\): Error: no model 'x'$"):
        await LmsCli(str(lms)).load("x", context_length=4096)


async def test_arguments_are_never_shell_interpreted(tmp_path):
    lms = fake_lms(tmp_path / "bin")
    await LmsCli(str(lms)).unload("a b; touch pwned $(id)")
    assert calls(lms) == [["unload", "a b; touch pwned $(id)"]]
    assert not (tmp_path / "pwned").exists()


# -- timeouts ----------------------------------------------------------------------------------

async def test_timeout_kills_a_hanging_lms(tmp_path):
    lms = fake_lms(tmp_path / "bin", stdout=STATUS, hang=True)
    with trio.fail_after(20), pytest.raises(LmsError, match=r"did not finish within 0\.5 s"):
        await LmsCli(str(lms), timeout=0.5).server_status()
    assert gone(int((tmp_path / "bin" / "pid").read_text()))


@pytest.mark.skipif(os.name != "posix", reason="process groups")
async def test_timeout_kills_what_lms_started_too(tmp_path):
    lms = tmp_path / "lms"
    lms.write_text(f'#!/bin/sh\nsleep 60 &\necho $! > "{tmp_path}/child"\nwait\n')
    lms.chmod(0o755)
    with trio.fail_after(20), pytest.raises(LmsError, match="killed"):
        await LmsCli(str(lms), timeout=0.5).ps()
    child = int((tmp_path / "child").read_text())
    with trio.fail_after(10):  # the orphan is reaped by init, not by us
        while not gone(child):
            await trio.sleep(0.01)


async def test_per_call_timeout_for_load(tmp_path):
    lms = fake_lms(tmp_path / "bin", hang=True)
    with trio.fail_after(20), pytest.raises(LmsError, match=r"within 0\.2 s"):
        await LmsCli(str(lms), timeout=30).load("m", context_length=4096, timeout=0.2)


# -- locating the binary -----------------------------------------------------------------------

async def test_missing_explicit_path(tmp_path):
    cli = LmsCli(str(tmp_path / "nope" / "lms"))
    assert not cli.available
    with pytest.raises(LmsNotFound, match="not found"):
        await cli.server_status()


async def test_missing_everywhere(tmp_path):
    (tmp_path / "empty").mkdir()
    cli = LmsCli(env={"PATH": str(tmp_path / "empty"), "LMSTUDIO_HOME": str(tmp_path / "home")})
    assert cli.locate() is None
    with pytest.raises(LmsNotFound):
        await cli.ps()


async def test_found_on_path_from_env(tmp_path):
    lms = fake_lms(tmp_path / "bin", stdout=STATUS)
    cli = LmsCli(env={"PATH": str(lms.parent), "LMSTUDIO_HOME": str(tmp_path / "home")})
    assert cli.locate() == str(lms)
    assert await cli.server_status() == {"running": True, "port": 1234}


async def test_found_in_lmstudio_home(tmp_path):
    lms = fake_lms(tmp_path / "home" / "bin", stdout=STATUS)
    (tmp_path / "empty").mkdir()
    cli = LmsCli(env={"PATH": str(tmp_path / "empty"), "LMSTUDIO_HOME": str(tmp_path / "home")})
    assert cli.locate() == str(lms)
    assert await cli.server_status() == {"running": True, "port": 1234}


async def test_found_via_the_home_pointer_of_the_env_home(tmp_path, monkeypatch):
    monkeypatch.delenv("LMSTUDIO_HOME", raising=False)
    lms = fake_lms(tmp_path / "elsewhere" / "bin", stdout=STATUS)
    user = tmp_path / "user"
    user.mkdir()
    (user / ".lmstudio-home-pointer").write_text(f"{tmp_path / 'elsewhere'}\n")
    cli = LmsCli(env={"PATH": str(user), "HOME": str(user)})
    assert cli.locate() == str(lms)
