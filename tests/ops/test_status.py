"""``lmsd status``, run as a real subprocess against an in-process lmsd and the LM Studio
emulator, and its formatting of several upstreams."""

from __future__ import annotations

import json
import os
import re

import trio

from lmsd import __version__
from tests.ops.lmsd_cli import (
    MODEL,
    admin_address,
    converse,
    ok,
    run,
)


async def test_status_pretty_and_json(lmsd, emulator):
    await converse(lmsd, emulator, turns=2)
    text = ok(await run("status", "--admin-listen", admin_address(lmsd)))
    assert text.startswith(f"lmsd {__version__} (pid {os.getpid()}), up ")
    assert f"upstream  {emulator.url} (found by: config), reachable" in text
    assert "dialect   responses (LM Studio answered /lmstudio-greeting: its /v1/responses " \
        "chains turns (previous_response_id), so it prefills only what is new), chaining on" \
        in text
    assert f"models    {MODEL}  context 32768 / 262144  loaded" in text
    assert "watcher   not enforcing min_context 32768; reloading: none; backing off: none" \
        in text
    assert "requests  2 served, 0 errors, 0 in flight, 0 open streams" in text
    assert f"store     2 chain nodes in 1 chain, persistent at {lmsd.store.path}" in text

    data = json.loads(ok(await run("status", "--json", "--admin-listen", admin_address(lmsd))))
    assert data["version"] == __version__
    assert data["upstream"]["source"] == "config"
    assert data["upstream"]["reachable"] is True
    assert [m["key"] for m in data["models"]] == [MODEL]
    assert data["requests"]["requests"] == 2
    assert data["store"]["nodes"] == 2


def test_status_lists_every_upstream_when_there_are_several():
    from lmsd.ops.status import format_status

    data = {"upstream": {"url": "http://a:1"}, "upstreams": [
        {"name": "desk", "url": "http://a:1", "api": "responses", "in_rotation": True,
         "in_flight": 2, "active_sessions": 3, "health": {"state": "closed"}},
        {"name": "lap", "url": "http://b:2", "api": "chat", "in_rotation": False,
         "in_flight": 0, "active_sessions": 1,
         "health": {"state": "open", "last_error": "connection refused"}}]}
    text = format_status(data)
    assert ("upstreams desk: http://a:1 responses, in rotation, 2 in flight, 3 active "
            "sessions") in text
    assert "lap: http://b:2 chat, OUT (connection refused), 0 in flight, 1 active session" \
        in text
    assert "upstreams" not in format_status({**data, "upstreams": data["upstreams"][:1]})


async def test_status_headline_speaks_for_every_upstream(start_lmsd, nursery):
    """Two upstreams, the first one stopped: the headline says one serves and one is not
    reachable (naming it and why), not "NOT reachable" for the whole daemon; each model
    line names the upstream that serves it."""
    from tests.emulator import Emulator, ModelSpec
    from tests.support.boxes import Box, upstreams

    a = Box(nursery, Emulator(models=[ModelSpec("alpha/coder")]), "a")
    b = Box(nursery, Emulator(models=[ModelSpec("beta/coder")]), "b")
    await a.start()
    await b.start()
    server = await start_lmsd(a.url, upstreams=upstreams(a, b), poll_interval="0.1")
    first, second = server.router.backends
    with trio.fail_after(10):
        while not (first.watcher.polls and second.watcher.polls):
            await trio.sleep(0.02)
    await a.stop()
    with trio.fail_after(10):
        while first.watcher.reachable is not False:
            await trio.sleep(0.02)
    text = ok(await run("status", "--admin-listen", admin_address(server)))
    lines = text.splitlines()
    headline = next(line for line in lines if line.startswith("upstream "))
    assert re.fullmatch(r"upstream  2 upstreams: 1 serving, 1 not reachable \(a: .+\)",
                        headline), headline
    assert "NOT reachable" not in text
    assert f"a: {a.url} " in text and f"b: {b.url} " in text
    models = [line[10:] for line in lines[lines.index(next(
        line for line in lines if line.startswith("models "))):] if line[:10].strip() in
        ("models", "")]
    assert sorted(models) == [
        "alpha/coder on a  context 32768 / 262144  loaded (as last seen: a not reachable)",
        "beta/coder on b  context 32768 / 262144  loaded"]
    assert "; last error (a): " in text  # the watcher line is the first upstream's


def test_the_upstreams_headline_counts_each_condition_and_names_why():
    from lmsd.ops.status import upstreams_headline

    listed = [
        {"name": "desk", "reachable": True, "in_rotation": True},
        {"name": "lap", "reachable": False, "in_rotation": False,
         "health": {"last_error": "connection refused"}},
        {"name": "cloud", "reachable": True, "in_rotation": True, "refused": "wrong key"},
        {"name": "new", "reachable": None, "in_rotation": True},
        {"name": "flaky", "reachable": True, "in_rotation": False,
         "health": {"state": "open", "last_error": "timed out"}},
        {"name": "also", "reachable": True, "in_rotation": True}]
    assert upstreams_headline(listed) == (
        "6 upstreams: 2 serving, 1 not checked yet (new), 1 refused (cloud: wrong key), "
        "1 not reachable (lap: connection refused), 1 out of rotation (flaky: timed out)")


async def test_a_started_model_whose_engine_is_stopped_shows_as_stopped_on_demand(tmp_path):
    """The daemon's own rows for two started models, neither engine running: /upstreams
    says started and parked, and ``lmsd status`` says stopped on demand, never down."""
    from lmsd.config import load_settings
    from lmsd.daemon.assembly import router_for, started_backends
    from lmsd.ops.status import format_status

    path = tmp_path / "lmsd.toml"
    path.write_text("".join(f'[[models]]\nname = "{n}"\ncommand = ["llama-server", "-m", '
                            f'"/m/{n}.gguf", "--port", "${{PORT}}"]\n' for n in ("big", "small")))
    settings = load_settings({"config": str(path)}, {})
    backends, _ = started_backends(settings)
    router = router_for(settings, backends)
    rows = router.upstreams_json()
    assert [(r["name"], r["started"], r["parked"]) for r in rows] == [
        ("big", True, True), ("small", True, True)]
    text = format_status({"upstream": backends[0].state_json(), "upstreams": rows})
    assert "upstream  2 upstreams: 2 stopped on demand (big; small)" in text
    assert f"big: {backends[0].base_url} ?, stopped (on demand), 0 in flight" in text
    assert "NOT reachable" not in text and "OUT" not in text
    one = format_status({"upstream": backends[0].state_json(), "upstreams": rows[:1]})
    assert f"upstream  {backends[0].base_url} (found by: started), stopped (on demand): " \
        "a request starts it" in one
    backends[1].parked = lambda: False  # its engine answers: the usual words again
    row = router.upstreams_json()[1]
    assert row["parked"] is False and row["started"] is True
