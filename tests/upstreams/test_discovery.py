import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import trio

from lmsd.upstreams import discovery
from lmsd.upstreams.discovery import Found, discover, lmstudio_home, probe
from lmsd.upstreams.lms import LmsCli
from tests.emulator import Emulator, serve_emulator
from tests.support.fake_lms import calls, fake_lms


@pytest.fixture(autouse=True)
def no_env_home(monkeypatch):
    monkeypatch.delenv("LMSTUDIO_HOME", raising=False)




@pytest.fixture(autouse=True)
def no_default_server(monkeypatch, dead_port):
    """Whatever listens on the real port 1234 must not leak into these tests."""
    monkeypatch.setattr(discovery, "DEFAULT_PORT", dead_port)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


@pytest.fixture
async def lmstudio(nursery) -> int:
    """The port of a served LM Studio emulator."""
    url = await serve_emulator(nursery, Emulator())
    return int(url.rsplit(":", 1)[1])


@pytest.fixture
def events() -> Iterator[list[dict]]:
    seen: list[dict] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append({"event": record.getMessage(), **getattr(record, "lmsd_fields", {})})

    logger = logging.getLogger("lmsd")
    handler, level = Keep(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(level)


def server_config(lms_home: Path, port: int) -> None:
    (lms_home / ".internal").mkdir(parents=True, exist_ok=True)
    (lms_home / ".internal" / "http-server-config.json").write_text(json.dumps({"port": port}))


def status_lms(tmp_path: Path, **kwargs) -> LmsCli:
    return LmsCli(str(fake_lms(tmp_path / "bin", **kwargs)))


# -- LM Studio's home --------------------------------------------------------------------------

def test_home_default_cache_pointer_and_env(tmp_path, monkeypatch):
    assert lmstudio_home(tmp_path) == tmp_path / ".lmstudio"
    (tmp_path / ".cache" / "lm-studio").mkdir(parents=True)
    assert lmstudio_home(tmp_path) == tmp_path / ".cache" / "lm-studio"
    (tmp_path / ".lmstudio-home-pointer").write_text(f"{tmp_path / 'models-disk'}\n")
    assert lmstudio_home(tmp_path) == tmp_path / "models-disk"
    monkeypatch.setenv("LMSTUDIO_HOME", str(tmp_path / "override"))
    assert lmstudio_home(tmp_path) == tmp_path / "override"
    assert not (tmp_path / ".lmstudio").exists()  # nothing is written


def test_empty_pointer_is_ignored(tmp_path):
    (tmp_path / ".lmstudio-home-pointer").write_text("\n")
    assert lmstudio_home(tmp_path) == tmp_path / ".lmstudio"


# -- probe -------------------------------------------------------------------------------------

async def test_probe_only_accepts_the_lmstudio_greeting(client, lmstudio, dead_port):
    assert await probe(client, f"http://127.0.0.1:{lmstudio}")
    assert await probe(client, f"http://127.0.0.1:{lmstudio}/")
    assert not await probe(client, f"http://127.0.0.1:{lmstudio}/v1")  # 404
    assert not await probe(client, f"http://127.0.0.1:{dead_port}")


@pytest.mark.parametrize("answer", [
    httpx.Response(200, json={"lmstudio": False}),
    httpx.Response(200, json={"lmstudio": "yes"}),
    httpx.Response(200, json=[True]),
    httpx.Response(200, text="<html>"),
    httpx.Response(500, json={"lmstudio": True}),
])
async def test_probe_rejects_other_answers(answer):
    transport = httpx.MockTransport(lambda request: answer)
    async with httpx.AsyncClient(transport=transport) as client:
        assert not await probe(client, "http://lmstudio.test")


# -- discover: each source, in order -----------------------------------------------------------

async def test_server_config_file_comes_first(tmp_path, client, lmstudio, events):
    server_config(tmp_path / ".lmstudio", lmstudio)
    lms = status_lms(tmp_path, stdout='{"running":true,"port":1}\n')
    found = await discover("auto", client=client, lms=lms, home=tmp_path)
    assert found == Found(f"http://127.0.0.1:{lmstudio}", "http-server-config.json", True)
    assert calls(tmp_path / "bin" / "lms") == []
    assert events == [{"event": "upstream.discovered", "url": found.url,
                       "source": "http-server-config.json", "reachable": True}]


async def test_server_config_found_through_the_pointer_file(tmp_path, client, lmstudio):
    server_config(tmp_path / "big-disk" / "lmstudio", lmstudio)
    server_config(tmp_path / ".lmstudio", 1)  # not the home in use
    (tmp_path / ".lmstudio-home-pointer").write_text(str(tmp_path / "big-disk" / "lmstudio"))
    found = await discover("auto", client=client, lms=None, home=tmp_path)
    assert found == Found(f"http://127.0.0.1:{lmstudio}", "http-server-config.json", True)


async def test_dead_config_port_falls_through_to_lms_server_status(
    tmp_path, client, lmstudio, dead_port, events
):
    server_config(tmp_path / ".lmstudio", dead_port)
    lms = status_lms(tmp_path, stdout=json.dumps({"running": True, "port": lmstudio}))
    found = await discover("auto", client=client, lms=lms, home=tmp_path)
    assert found == Found(f"http://127.0.0.1:{lmstudio}", "lms server status", True)
    assert calls(tmp_path / "bin" / "lms") == [["server", "status", "--json", "--quiet"]]
    assert [e["source"] for e in events] == ["lms server status"]


@pytest.mark.parametrize("config", ["{not json", '{"port": "1234"}', '{"port": true}', "[]"])
async def test_unreadable_config_falls_through(tmp_path, client, lmstudio, config):
    (tmp_path / ".lmstudio" / ".internal").mkdir(parents=True)
    (tmp_path / ".lmstudio" / ".internal" / "http-server-config.json").write_text(config)
    lms = status_lms(tmp_path, stdout=json.dumps({"running": True, "port": lmstudio}))
    found = await discover("auto", client=client, lms=lms, home=tmp_path)
    assert found.source == "lms server status"


async def test_greeting_probe_of_the_default_port(tmp_path, client, lmstudio, monkeypatch):
    monkeypatch.setattr(discovery, "DEFAULT_PORT", lmstudio)
    lms = status_lms(tmp_path, stdout='{"running":false,"port":null}\n')
    found = await discover("auto", client=client, lms=lms, home=tmp_path)
    assert found == Found(f"http://127.0.0.1:{lmstudio}", "lmstudio-greeting probe", True)
    assert calls(tmp_path / "bin" / "lms") == [["server", "status", "--json", "--quiet"]]


async def test_nothing_reachable_is_the_default(tmp_path, client, dead_port, events):
    server_config(tmp_path / ".lmstudio", dead_port)
    lms = status_lms(tmp_path, stdout=json.dumps({"running": True, "port": dead_port}))
    found = await discover("auto", client=client, lms=lms, home=tmp_path)
    assert found == Found("http://localhost:1234", "default", False)
    assert events == [{"event": "upstream.discovered", "url": "http://localhost:1234",
                       "source": "default", "reachable": False}]


@pytest.mark.parametrize("kwargs", [
    {"hang": True},
    {"code": 1, "stderr": "boom\n"},
    {"stdout": "garbage\n"},
    {"stdout": '{"running":true}\n'},
])
async def test_failing_lms_falls_through(tmp_path, client, lmstudio, monkeypatch, kwargs):
    monkeypatch.setattr(discovery, "DEFAULT_PORT", lmstudio)
    lms = LmsCli(str(fake_lms(tmp_path / "bin", **kwargs)), timeout=0.5)
    with trio.fail_after(20):
        found = await discover("auto", client=client, lms=lms, home=tmp_path)
    assert found.source == "lmstudio-greeting probe"
    assert calls(tmp_path / "bin" / "lms") == [["server", "status", "--json", "--quiet"]]


async def test_hanging_lms_with_nothing_reachable(tmp_path, client):
    lms = LmsCli(str(fake_lms(tmp_path / "bin", hang=True)), timeout=0.5)
    with trio.fail_after(20):
        found = await discover("auto", client=client, lms=lms, home=tmp_path)
    assert found == Found("http://localhost:1234", "default", False)


async def test_missing_lms_is_skipped(tmp_path, client):
    lms = LmsCli(str(tmp_path / "no-such-lms"))
    found = await discover("auto", client=client, lms=lms, home=tmp_path)
    assert found.source == "default"


async def test_host_is_used_for_every_probe(tmp_path, client, lmstudio):
    server_config(tmp_path / ".lmstudio", lmstudio)
    found = await discover("auto", client=client, lms=None, home=tmp_path, host="localhost")
    assert found == Found(f"http://localhost:{lmstudio}", "http-server-config.json", True)


# -- discover: an explicit URL -----------------------------------------------------------------

async def test_configured_url_is_used_as_is(tmp_path, client, lmstudio, events):
    server_config(tmp_path / ".lmstudio", 1)
    lms = status_lms(tmp_path, stdout='{"running":true,"port":1}\n')
    found = await discover(f"http://127.0.0.1:{lmstudio}/", client=client, lms=lms, home=tmp_path)
    assert found == Found(f"http://127.0.0.1:{lmstudio}", "config", True)
    assert calls(tmp_path / "bin" / "lms") == []
    assert [e["source"] for e in events] == ["config"]


async def test_configured_url_that_is_down(tmp_path, client, dead_port):
    found = await discover(f"http://127.0.0.1:{dead_port}", client=client, lms=None,
                           home=tmp_path)
    assert found == Found(f"http://127.0.0.1:{dead_port}", "config", False)


async def test_configured_openai_compatible_server_without_greeting(tmp_path):
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": []})
        return httpx.Response(404)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        found = await discover("http://gpu-box:1234", client=client, lms=None, home=tmp_path)
    assert found == Found("http://gpu-box:1234", "config", True)
