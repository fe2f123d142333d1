"""Recording a session in a running lmsd (admin API, config) and replaying what it wrote."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx

from lmsd.daemon.replay import replay_file
from lmsd.upstreams.recorder import Recorder
from tests.emulator import Reply, Text
from tests.support.conversation import Conversation, tool_turns
from tests.support.daemon import admin_get, next_event


async def test_a_recorded_session_is_written_redacted_and_replays_unchanged(
        client, emulator, start_lmsd):
    emulator.api_key = "hunter2"
    lmsd = await start_lmsd(emulator.url, upstream_api_key="hunter2")
    emulator.script(*tool_turns(2), Reply(Text("other")), Reply(Text("after")))
    async with httpx.AsyncClient(base_url=lmsd.admin_url) as http:
        started = (await http.put("/sessions/rec-1/record")).json()
        assert started["recording"] is True
        chat = Conversation(client.with_options(base_url=lmsd.url), session="rec-1")
        with lmsd.bus.subscribe(session="rec-1", types=("session.recorded",),
                                replay=0) as sub:
            await chat.send("start")
            await next_event(sub, "session.recorded")
            await chat.send()
            await next_event(sub, "session.recorded")
        await Conversation(client.with_options(base_url=lmsd.url), session="rec-2").send("x")
        listing = (await admin_get(lmsd, "/recordings")).json()
        assert listing["recording"] == ["rec-1"]
        files = [Path(f["path"]) for f in listing["files"]]
        assert [f["session"] for f in listing["files"]] == ["rec-1", "rec-1"]
        assert (await http.delete("/sessions/rec-1/record")).json()["recording"] is False
        await chat.send()
        assert len((await admin_get(lmsd, "/recordings")).json()["files"]) == 2
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "hunter2" not in text and "sk-ant-test" not in text
        exchange = json.loads(text)
        assert (exchange["session"], exchange["agent"], exchange["front"]) == (
            "rec-1", "main", "anthropic")
        [upstream] = [u for u in exchange["upstream"] if u["method"] == "POST"]
        assert upstream["path"] == "/v1/responses" and upstream["status"] == 200
        assert "response.completed" in "".join(t for _, t in upstream["chunks"])
        assert exchange["client_stream"]["status"] == 200
        assert "authorization" not in json.dumps(exchange).lower()
        diff, result = await replay_file(path)
        assert diff == [] and result["unmatched_upstream"] == []


async def test_the_config_records_a_session_from_the_start(client, emulator, start_lmsd):
    lmsd = await start_lmsd(emulator.url, record_sessions="cfg-1")
    emulator.script(Reply(Text("hey")))
    with lmsd.bus.subscribe(session="cfg-1", types=("session.recorded",), replay=0) as sub:
        await Conversation(client.with_options(base_url=lmsd.url), session="cfg-1").send("hi")
        written = await next_event(sub, "session.recorded")
    [one] = (await admin_get(lmsd, "/recordings")).json()["files"]
    assert one["path"] == written["path"] and one["bytes"] == written["bytes"]
    exchange = json.loads(Path(one["path"]).read_text(encoding="utf-8"))
    assert "hey" in "".join(t for _, t in exchange["client_stream"]["chunks"])


def test_recordings_past_their_age_or_the_size_bound_are_removed(tmp_path):
    recorder = Recorder(tmp_path, max_bytes=250, max_age=3600)
    folder = tmp_path / "s"
    folder.mkdir()
    now = time.time()
    for name, age in (("old", 7200), ("a", 300), ("b", 200), ("c", 100)):
        path = folder / f"{name}.json"
        path.write_text("x" * 100)
        os.utime(path, (now - age, now - age))
    recorder.prune(now)
    assert sorted(p.name for p in folder.iterdir()) == ["b.json", "c.json"]
