"""Several upstreams at once, end to end: two emulated boxes behind one lmsd, driven by
the official anthropic SDK the way Claude Code holds a conversation."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest
import trio

from lmsd.protocol.failures import Unreachable
from tests.emulator import Emulator, ModelSpec
from tests.support.boxes import Box, boxes, upstreams
from tests.support.conversation import Conversation
from tests.support.daemon import MODEL, admin_get, next_event


@pytest.fixture
async def pair(nursery: trio.Nursery) -> list[Box]:
    return await boxes(nursery, "a", "b")


async def start_pair(start_lmsd: Any, pair: list[Box], **settings: Any) -> Any:
    per_box = settings.pop("per_box", {})
    settings.setdefault("poll_interval", "0.1")
    return await start_lmsd(pair[0].url, upstreams=upstreams(*pair, **per_box), **settings)


async def alpha_beta(start_lmsd: Any, nursery: trio.Nursery) -> tuple[Box, Box, Any]:
    """Two boxes with a model each (a: alpha/coder, b: beta/coder), both listed."""
    a = Box(nursery, Emulator(models=[ModelSpec("alpha/coder")]), "a")
    b = Box(nursery, Emulator(models=[ModelSpec("beta/coder")]), "b")
    await a.start()
    await b.start()
    server = await start_pair(start_lmsd, [a, b])
    await wait_until(lambda: all(x.watcher.polls for x in server.router.backends))
    return a, b, server


def client_of(server: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=server.url, api_key="sk-ant-test", max_retries=0)


async def wait_until(check: Any, limit: float = 10) -> None:
    with trio.fail_after(limit):
        while not check():
            await trio.sleep(0.02)


async def upstreams_of(server: Any) -> dict[str, dict[str, Any]]:
    answer = await admin_get(server, "/upstreams")
    assert answer.status_code == 200
    return {u["name"]: u for u in answer.json()["upstreams"]}


async def test_sessions_spread_and_stay_chained_on_their_own_upstream(start_lmsd, pair):
    a, b = pair
    server = await start_pair(start_lmsd, pair)
    async with client_of(server) as client:
        one, two = Conversation(client, "s-one"), Conversation(client, "s-two")
        await one.send("hello")
        await two.send("hello")  # arrives after the first ended: spread all the same
        for _ in range(2):
            await one.send()
            await two.send()
    assert len(a.generations()) == 3 and len(b.generations()) == 3
    sessions = {r.headers["x-session-id"] for r in a.generations()}
    assert sessions == {"s-one"}
    assert {r.headers["x-session-id"] for r in b.generations()} == {"s-two"}
    for box in pair:  # turns 2+ went chained to the upstream that holds the response
        first, *later = box.generations()
        assert first.previous_response_id is None
        assert all(r.previous_response_id in box.emu.responses for r in later)
        assert all(len(r.new_items) == 1 for r in later)
    stats = {(k[0]): v for k, v in server.store.stats.items()}
    assert stats["s-one"].upstream == "a" and stats["s-two"].upstream == "b"
    assert stats["s-one"].chain_hits == 2 and stats["s-one"].upstream_moves == 0
    listed = await upstreams_of(server)
    assert listed["a"]["active_sessions"] == 1 and listed["b"]["active_sessions"] == 1
    assert listed["a"]["sessions"] == [{"session": "s-one", "agent": "main"}]


async def test_the_session_key_reaches_a_cluster_router_in_every_header(start_lmsd, pair):
    a, _ = pair
    server = await start_pair(start_lmsd, pair)
    async with client_of(server) as client:
        await Conversation(client, "sess-42").send("hi")
        await Conversation(client, "sess-42", agent="agent-7").send("hi")
    main, sub = a.generations()[0], (a.generations() + pair[1].generations())[-1]
    for header in ("x-smg-routing-key", "x-user-id", "x-dynamo-session-id", "x-session-id"):
        assert main.headers[header] == "sess-42"
        assert sub.headers[header] == "sess-42/agent-7"


async def test_affinity_headers_are_configurable(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, affinity_headers="x-my-router-key")
    async with client_of(server) as client:
        await Conversation(client, "sess-9").send("hi")
    [sent] = [r for r in emulator.log if r.path == "/v1/responses"]
    assert sent.headers["x-my-router-key"] == "sess-9"
    assert "x-smg-routing-key" not in sent.headers


async def test_a_killed_upstream_moves_its_session_with_no_error_and_rejoins(
        start_lmsd, pair):
    a, b = pair
    # no active checks: the request finds out, fails over, and a probe brings a back
    server = await start_pair(start_lmsd, pair, poll_interval="60", breaker_cooldown="0.3")
    async with client_of(server) as client:
        one, two = Conversation(client, "s-one"), Conversation(client, "s-two")
        await one.send("hello")
        await two.send("hello")
        await a.stop()  # the box holding s-one goes away mid-conversation
        answer = await one.send()  # no error reaches the client
        assert answer.stop_reason == "end_turn"
        moved = b.generations()[-1]
        assert moved.headers["x-session-id"] == "s-one"
        assert moved.previous_response_id is None  # a chain never crosses upstreams
        await one.send()  # chained again, on its new upstream
        assert b.generations()[-1].previous_response_id in b.emu.responses
        listed = await upstreams_of(server)
        assert listed["a"]["in_rotation"] is False
        assert listed["a"]["health"]["state"] == "open"
        await a.restart()
        await wait_until(lambda: server.router.backend("a").available(trio.current_time()))
        await Conversation(client, "s-three").send("hello")  # the least loaded: a probe
        assert server.router.backend("a").breaker.state == "closed"
        assert a.generations()[-1].headers["x-session-id"] == "s-three"
        await one.send()  # a moved session does not bounce back
        assert b.generations()[-1].headers["x-session-id"] == "s-one"
    kinds = [(e["type"], e.get("upstream") or e.get("failed")) for e in server.bus.recent]
    assert ("upstream.failover", "a") in kinds
    assert ("upstream.out", "a") in kinds and ("upstream.rejoined", "a") in kinds
    stats = {k[0]: v for k, v in server.store.stats.items()}
    assert stats["s-one"].upstream == "b" and stats["s-one"].upstream_moves == 1
    assert stats["s-one"].misses == {"no_node": 1, "moved_upstream": 1}
    metrics = (await admin_get(server, "/metrics")).text
    assert 'lmsd_upstream_failovers_total{from_upstream="a",to_upstream="b"} 1.0' in metrics
    assert 'lmsd_upstream_in_rotation{upstream="a"} 1.0' in metrics


async def test_when_every_upstream_is_down_the_client_gets_its_error(start_lmsd, pair):
    server = await start_pair(start_lmsd, pair, poll_interval="60")  # no active check
    await wait_until(lambda: all(x.watcher.polls for x in server.router.backends))
    for box in pair:
        await box.stop()
    async with client_of(server) as client:
        with pytest.raises(anthropic.APIStatusError) as caught:  # tried a, then b
            await Conversation(client, "s-one").send("hello")
        assert "LM Studio is not reachable at http://127.0.0.1:" in str(caught.value)
        with pytest.raises(anthropic.APIStatusError) as caught:  # both out of rotation
            await Conversation(client, "s-two").send("hello")
    assert caught.value.status_code == 503
    said = str(caught.value)
    assert "no upstream serving 'claude-sonnet-4-6' is available (a: " in said
    for box in pair:  # each named, with why
        assert f"{box.name}: LM Studio at {box.url} is out of rotation after failures (" in said
    assert caught.value.response.headers["x-should-retry"] == "false"


async def test_a_model_goes_to_the_upstreams_that_serve_it(start_lmsd, nursery):
    a, b, server = await alpha_beta(start_lmsd, nursery)
    async with client_of(server) as client:
        await Conversation(client, "s-1", model="beta/coder").send("hi")
        await Conversation(client, "s-2", model="alpha/coder").send("hi")
        assert [r.model for r in b.generations()] == ["beta/coder"]
        assert [r.model for r in a.generations()] == ["alpha/coder"]
        with pytest.raises(anthropic.APIStatusError) as caught:
            await Conversation(client, "s-3", model="gamma/coder").send("hi")
    assert caught.value.status_code == 404  # both answer, neither lists it
    assert (f"no upstream can serve model 'gamma/coder' (a: LM Studio at {a.url} serves only "
            f"alpha/coder; b: LM Studio at {b.url} serves only beta/coder)"
            ) in str(caught.value)


async def test_each_upstream_maps_claude_names_to_its_own_model(start_lmsd, nursery):
    a, b, server = await alpha_beta(start_lmsd, nursery)
    async with client_of(server) as client:
        await Conversation(client, "s-1").send("hi")
        await Conversation(client, "s-2").send("hi")
    assert [r.model for r in a.generations()] == ["alpha/coder"]
    assert [r.model for r in b.generations()] == ["beta/coder"]


async def test_side_requests_take_the_background_route_and_leave_the_pin(start_lmsd, pair):
    a, b = pair
    server = await start_pair(start_lmsd, pair, background_upstream="b")
    async with client_of(server) as client:
        main = Conversation(client, "s-one")
        await main.send("hello")
        title = Conversation(client, "s-one", model="claude-haiku-4-5-20251001", tools=[])
        await title.send("name this session")
        await main.send()
    assert [r.headers["x-session-id"] for r in b.generations()] == ["s-one"]
    assert len(b.generations()[0].tools) == 0  # the title request
    assert len(a.generations()) == 2
    assert a.generations()[1].previous_response_id in a.emu.responses  # still chained


async def test_a_busy_upstream_spills_past_its_max_concurrent(start_lmsd, pair):
    a, b = pair
    a.emu.token_delay = 0.05  # a slow answer keeps one request in flight on a
    server = await start_pair(start_lmsd, pair, per_box={"a": {"max_concurrent": 1}})
    async with client_of(server) as client:
        first = Conversation(client, "s-one")
        await first.send("hello")  # pinned to a

        async def busy() -> None:  # the same conversation, sent twice at once
            await Conversation(client, "s-one").request(
                [{"role": "user", "content": "long answer please"}])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(busy)
            await wait_until(lambda: server.router.backend("a").in_flight)
            await first.send()
    a_sessions = [(r.headers["x-session-id"]) for r in a.generations()]
    b_sessions = [(r.headers["x-session-id"]) for r in b.generations()]
    assert a_sessions.count("s-one") == 2 and b_sessions == ["s-one"]
    assert "s-one" in b_sessions  # one of the two had to spill


async def test_after_a_restart_a_session_returns_to_the_upstream_holding_its_chain(
        start_lmsd, pair, tmp_path):
    a, b = pair
    first = await start_pair(start_lmsd, pair)
    async with client_of(first) as client:
        one, two = Conversation(client, "s-one"), Conversation(client, "s-two")
        await one.send("hello")
        await two.send("hello")
    first.shutdown.set()
    second = await start_pair(start_lmsd, pair)  # same state_dir: the store survives
    async with client_of(second) as client:
        two.client = client
        await two.send()  # s-two first: least loaded would say a
    last = b.generations()[-1]
    assert last.headers["x-session-id"] == "s-two"
    assert last.previous_response_id in b.emu.responses


async def test_upstreams_and_status_show_every_upstream(start_lmsd, pair):
    server = await start_pair(start_lmsd, pair, per_box={"b": {"weight": 2,
                                                                "api_key": "secret"}})
    await wait_until(lambda: all(x.watcher.polls for x in server.router.backends))
    listed = await upstreams_of(server)
    assert set(listed) == {"a", "b"}
    assert listed["b"]["weight"] == 2.0 and listed["b"]["config"]["api_key"] == "***"
    assert listed["a"]["api"] == "responses" and "LM Studio" in listed["a"]["api_why"]
    assert listed["a"]["models"] == [MODEL] and listed["a"]["reachable"] is True
    status = (await admin_get(server, "/status")).json()
    assert [u["name"] for u in status["upstreams"]] == ["a", "b"]
    assert {m["upstream"] for m in status["models"]} == {"a", "b"}
    assert "secret" not in (await admin_get(server, "/status")).text


async def test_a_session_reset_forgets_its_pin(start_lmsd, pair):
    server = await start_pair(start_lmsd, pair)
    async with client_of(server) as client:
        await Conversation(client, "s-one").send("hello")
    assert server.router.placement.pinned(("s-one", "main")) == "a"
    async with httpx.AsyncClient(base_url=server.admin_url) as http:
        assert (await http.delete("/sessions/s-one")).status_code == 200
    assert server.router.placement.pinned(("s-one", "main")) is None


async def test_the_watcher_takes_a_dead_upstream_out_and_brings_it_back(start_lmsd, pair):
    a, _ = pair
    server = await start_pair(start_lmsd, pair)  # polls every 0.1 s: the active check
    backend = server.router.backend("a")
    await wait_until(lambda: backend.watcher.polls)
    await a.stop()
    await wait_until(lambda: backend.breaker.state == "open")
    async with client_of(server) as client:  # nothing is sent to it meanwhile
        for n in range(3):
            await Conversation(client, f"s-{n}").send("hello")
    assert len(a.generations()) == 0
    await a.restart()
    await wait_until(lambda: backend.breaker.state == "closed")  # no request needed
    assert (await upstreams_of(server))["a"]["in_rotation"] is True


async def test_a_probe_whose_client_leaves_does_not_wedge_the_upstream(start_lmsd, pair):
    a, _ = pair
    server = await start_pair(start_lmsd, pair, poll_interval="60", breaker_cooldown="0.2")
    backend = server.router.backend("a")
    await wait_until(lambda: backend.watcher.polls)  # its first poll would close it again
    backend.failed(Unreachable("down"), trio.current_time())
    await wait_until(lambda: backend.available(trio.current_time()))
    a.emu.token_delay = 2.0
    async with client_of(server) as client:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(Conversation(client, "s-one").send, "hello")
            await wait_until(lambda: backend.breaker.probing and a.generations())
            nursery.cancel_scope.cancel()  # the probe's client gives up mid-answer
        await wait_until(lambda: backend.in_flight == 0)
        assert backend.breaker.state == "half_open" and not backend.breaker.probing
        a.emu.token_delay = 0
        await Conversation(client, "s-one").send("hello")  # the next one may probe
    assert backend.breaker.state == "closed"


async def test_models_and_readiness_span_every_upstream(start_lmsd, nursery):
    a, b, server = await alpha_beta(start_lmsd, nursery)
    async with httpx.AsyncClient(base_url=server.url) as http:
        ids = [m["id"] for m in (await http.get("/v1/models")).json()["data"]]
    assert "alpha/coder" in ids and "beta/coder" in ids
    await a.stop()
    ready = await admin_get(server, "/readyz")
    assert ready.status_code == 200 and ready.json()["upstream"] == b.url
    await b.stop()
    ready = await admin_get(server, "/readyz")
    assert ready.status_code == 503
    assert ready.json()["error"].startswith("no upstream is ready; LM Studio is not reachable")


async def test_a_failover_counts_the_failure_once(start_lmsd, pair):
    from tests.emulator.script import Fault

    a, b = pair
    server = await start_pair(start_lmsd, pair, poll_interval="60")
    backend = server.router.backend("a")
    await wait_until(lambda: backend.watcher.polls)
    async with client_of(server) as client:
        one = Conversation(client, "s-one")
        await one.send("hello")  # pinned to a
        a.emu.inject(Fault("http", status=503, message="busy"))
        answer = await one.send()  # a says 503: moved to b, no error shown
    assert answer.stop_reason in ("end_turn", "tool_use")
    assert b.generations()[-1].headers["x-session-id"] == "s-one"
    assert backend.breaker.consecutive == 1  # one failure, counted once
    assert backend.breaker.state == "closed"  # 1 of breaker_failures (3)


def warmups_on(box: Box) -> list[Any]:
    """The re-warm replays a box received (not stored, a few tokens)."""
    return [r for r in box.requests("/v1/responses") if r.body.get("store") is False
            and r.body.get("max_output_tokens") == 16]


async def lost_on(sub: Any, upstream: str) -> dict[str, Any]:
    with trio.fail_after(20):
        while True:
            item = await sub.next()
            if item.get("type") == "cache.lost" and item.get("upstream") == upstream:
                return item


async def test_a_conversation_is_warmed_only_on_the_upstream_it_moved_to(start_lmsd, pair):
    """After a failover from a to b, a restarted a does not replay the conversation (a
    full cold prefill on a box that no longer serves it); a restarted b does."""
    a, b = pair
    server = await start_pair(start_lmsd, pair, watch="true", breaker_cooldown="0.3")
    async with client_of(server) as client:
        one = Conversation(client, "s-one")
        await one.send("hello")
        assert [r.headers["x-session-id"] for r in a.generations()] == ["s-one"]
        await a.stop()
        await one.send()  # fails over to b
        assert b.generations()[-1].headers["x-session-id"] == "s-one"
    down = {x.name: lambda x=x: x.watcher.reachable is False for x in server.router.backends}
    with server.bus.subscribe(types=("cache",), replay=0) as sub:
        await wait_until(down["a"])
        await a.restart()  # its cache is empty
        lost = await lost_on(sub, "a")
        assert lost["rewarm"] is None  # nothing of s-one is warmed there
        await b.stop()
        await wait_until(down["b"])
        await b.restart()
        lost = await lost_on(sub, "b")
        assert lost["rewarm"] == ["s-one/main"]
        while (warmed := await next_event(sub, "cache.warmed"))["upstream"] != "b":
            pass
    assert warmed["conversation"] == "s-one/main"
    assert warmups_on(a) == [] and len(warmups_on(b)) == 1
    moved = b.generations()[0]  # the turn that failed over, in full
    assert warmups_on(b)[0].body["input"] == moved.body["input"]


async def test_a_title_naming_the_local_model_takes_the_background_route(start_lmsd, pair):
    """ANTHROPIC_SMALL_FAST_MODEL names the local model: the title is known by its shape
    (no tools, no thinking, a JSON schema) and goes where side requests go."""
    a, b = pair
    server = await start_pair(start_lmsd, pair, background_upstream="b")
    async with client_of(server) as client:
        main = Conversation(client, "s-one", model=MODEL)
        await main.send("hello")
        await client.messages.create(
            model=MODEL, max_tokens=1000, system="You are naming a coding session.",
            messages=[{"role": "user", "content": "<session>hello</session>"}],
            extra_headers={"X-Claude-Code-Session-Id": "s-one"},
            extra_body={"output_config": {"format": {"type": "json_schema", "schema": {
                "type": "object", "properties": {"title": {"type": "string"}}}}}})
        await main.send()
    assert [r.headers["x-session-id"] for r in b.generations()] == ["s-one"]
    assert len(b.generations()[0].tools) == 0  # the title request
    assert len(a.generations()) == 2
    assert a.generations()[1].previous_response_id in a.emu.responses  # still chained
