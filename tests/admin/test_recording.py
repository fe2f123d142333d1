"""Recording a session in a running lmsd (admin API, config) and replaying what it wrote."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx

from lmsd.daemon.replay import replay_file
from lmsd.sessions.recordings import Recorder, safe_name
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


def _exchange(session: str, text: str = "x") -> dict:
    from lmsd.protocol import recording as fmt

    exchange = fmt.new_exchange(recorded_at=time.time(), method="POST", path="/v1/messages",
                                headers=(), body=json.dumps({"text": text}).encode())
    exchange["session"] = session
    return exchange


def test_two_session_ids_that_clean_to_one_name_get_two_folders(tmp_path):
    recorder = Recorder(tmp_path / "rec", ["a:b", "a_b", ".."])
    written = {sid: recorder._write(_exchange(sid)) for sid in ("a:b", "a_b", "..", "a_b")}
    assert written["a:b"].parent != written["a_b"].parent
    assert written["a_b"].parent.name == "a_b"  # a plain id keeps its plain name
    assert written[".."].parent.parent == tmp_path / "rec"
    listing = recorder.listing()["files"]
    assert sorted(f["session"] for f in listing) == ["..", "a:b", "a_b", "a_b"]
    assert len({safe_name(s) for s in ("a:b", "a_b", "a.b", "a/b", "a b", "a_b+x")}) == 6


def test_clean_up_never_follows_a_symlink_out_of_the_recordings(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "old.json"
    victim.write_text("keep me")
    linked_file = tmp_path / "linked.json"
    linked_file.write_text("keep me too")
    old = time.time() - 30 * 24 * 3600
    for path in (victim, linked_file):
        os.utime(path, (old, old))
    directory = tmp_path / "rec"
    (directory / "s").mkdir(parents=True)
    (directory / "evil").symlink_to(outside, target_is_directory=True)
    (directory / "s" / "link.json").symlink_to(linked_file)
    mine = directory / "s" / "mine.json"
    mine.write_text("{}")
    os.utime(mine, (old, old))
    recorder = Recorder(directory, max_age=3600)
    assert recorder.files() == [mine]
    recorder.prune()
    assert victim.read_text() == "keep me" and linked_file.read_text() == "keep me too"
    assert not mine.exists() and (directory / "s" / "link.json").is_symlink()


def test_recordings_are_private_whatever_the_umask(tmp_path):
    previous = os.umask(0)
    try:
        recorder = Recorder(tmp_path / "state" / "recordings", ["s"])
        path = recorder._write(_exchange("s"))
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert recorder.directory.stat().st_mode & 0o777 == 0o700
    assert (path.parent / ".session").stat().st_mode & 0o777 == 0o600
