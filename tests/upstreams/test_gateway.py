"""An upstream that is a cluster's gateway (``gateway = "smg"``): lmsd hands it the
session key and leaves placement to it. No slot steering through it, and one replica's
failure (a 5xx the gateway passes on) does not take the gateway out of rotation, where
the same failures take a plain upstream out. The real gateway: tests/cluster/."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
import trio

from lmsd.config import ConfigError, load_settings
from tests.emulator.script import Fault
from tests.support.boxes import Box, boxes, upstreams
from tests.support.conversation import Conversation
from tests.support.daemon import admin_get


@pytest.fixture
async def pair(nursery: trio.Nursery) -> list[Box]:
    return await boxes(nursery, "gw", "box")


async def start_pair(start_lmsd: Any, pair: list[Box], gateway: str = "smg") -> Any:
    """The first box as the gateway (weighted so new sessions go there first)."""
    gw = {"gateway": gateway, "weight": 100} if gateway else {"weight": 100}
    server = await start_lmsd(pair[0].url, poll_interval="60",
                              upstreams=upstreams(*pair, gw=gw))
    with trio.fail_after(10):
        while not all(b.watcher.polls for b in server.router.backends):
            await trio.sleep(0.02)
    return server


async def fail_three_times(server: Any, box: Box) -> None:
    """Three new sessions placed on ``box`` in turn, each refused there with a 503 (and
    answered by the other upstream: no client error)."""
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="x",
                                        max_retries=0) as client:
        for n in range(3):
            box.emu.inject(Fault.http(503, "worker 2 is gone"))
            answer = await Conversation(client, f"s-{n}").send("hello")
            assert answer.stop_reason in ("end_turn", "tool_use")
            assert holder(server, f"s-{n}") != box.name  # moved off it
    failed = [e["failed"] for e in server.bus.recent if e["type"] == "upstream.failover"]
    assert failed == [box.name] * 3  # each one was placed there first


def holder(server: Any, session: str) -> str:
    return next(v.upstream for k, v in server.store.stats.items() if k[0] == session)


async def test_a_gateway_keeps_its_place_when_a_replica_fails(start_lmsd, pair):
    gw, _ = pair
    server = await start_pair(start_lmsd, pair)
    await fail_three_times(server, gw)
    backend = server.router.backend("gw")
    assert backend.breaker.state == "closed" and backend.breaker.consecutive == 0
    said = [e for e in server.bus.recent if e["type"] == "upstream.replica_failed"]
    assert len(said) == 3 and said[0]["gateway"] == "smg" and "gone" in said[0]["error"]
    listed = {u["name"]: u for u in (await admin_get(server, "/upstreams")).json()[
        "upstreams"]}
    assert listed["gw"]["in_rotation"] and listed["gw"]["gateway"] == {
        "name": "smg", "key_headers": server.settings.affinity_headers}
    assert "gateway" not in listed["box"]
    assert listed["gw"]["cache"]["enabled"] is False  # no slots steered through it
    assert listed["box"]["cache"]["enabled"] is True


async def test_the_same_failures_take_a_plain_upstream_out(start_lmsd, pair):
    gw, _ = pair
    server = await start_pair(start_lmsd, pair, gateway="")
    await fail_three_times(server, gw)
    assert server.router.backend("gw").breaker.state == "open"


async def test_a_gateway_that_refuses_connections_is_taken_out(start_lmsd, pair):
    gw, _ = pair
    server = await start_pair(start_lmsd, pair)
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="x",
                                        max_retries=0) as client:
        chat = Conversation(client, "s-one")
        await chat.send("hello")
        await gw.stop()  # the gateway itself is gone, not one of its replicas
        assert (await chat.send()).stop_reason in ("end_turn", "tool_use")
    assert server.router.backend("gw").breaker.state == "open"


async def test_a_gateway_that_refuses_the_key_is_counted(start_lmsd, pair):
    gw, _ = pair
    server = await start_pair(start_lmsd, pair)
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="x",
                                        max_retries=0) as client:
        gw.emu.inject(Fault.http(401, "invalid api key"))  # the gateway's own refusal
        answer = await Conversation(client, "s-one").send("hello")
    assert answer.stop_reason in ("end_turn", "tool_use")  # answered by the other one
    assert server.router.backend("gw").breaker.consecutive == 1
    assert not [e for e in server.bus.recent if e["type"] == "upstream.replica_failed"]


def test_gateway_is_an_upstream_setting(tmp_path):
    path = tmp_path / "lmsd.toml"
    path.write_text('[[upstreams]]\nurl = "http://gw:30000"\ngateway = "smg"\n'
                    '[[upstreams]]\nurl = "http://box:8080"\n')
    gw, box = load_settings({"config": str(path)}, {}).upstream_list()
    assert (gw.gateway, box.gateway) == ("smg", "")
    path.write_text('[[upstreams]]\nurl = "http://gw:30000"\ngateway = "s m g"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings({"config": str(path)}, {})
    assert "gateway: use letters" in str(caught.value)
