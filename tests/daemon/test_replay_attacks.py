"""A replay file is untrusted (users swap them in bug reports): `lmsd replay FILE` run as
an attacker would have a user run it. It talks to nothing but lmsd's in-process app and
the recording (or ``--against URL``, on lmsd's own API paths); anything else is one line
on stderr, exit 2, and nothing sent."""

from __future__ import annotations

import copy
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.emulator import Reply, Text
from tests.support.conversation import Conversation
from tests.support.daemon import admin_get

GOLDEN = Path(__file__).parents[1] / "golden" / "claude_basic_responses.json"


def golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


async def replay_cli(tmp_path: Path, exchange: Any, *args: str) -> tuple[int, str, list[str]]:
    """``python -m lmsd replay FILE ARGS`` on ``exchange`` written as a file: (exit
    status, stdout, stderr lines)."""
    path = tmp_path / "handed-over.json"
    path.write_text(exchange if isinstance(exchange, str) else json.dumps(exchange),
                    encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LMSD_", "XDG_"))}
    with trio.fail_after(120):
        done = await trio.run_process(
            [sys.executable, "-m", "lmsd", "replay", str(path), *args], capture_stdout=True,
            capture_stderr=True, check=False, env={**env, "HOME": str(tmp_path)})
    return done.returncode, done.stdout.decode(), done.stderr.decode().splitlines()


@contextmanager
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP listener on loopback: (its port, what reached it). A connection completes in
    the kernel's backlog without an accept, so once the replay has exited, everything
    that connected is there to accept without waiting."""
    reached: list[bytes] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1], reached
        server.setblocking(False)
        while True:
            try:
                conn, _ = server.accept()
            except BlockingIOError:
                break
            with conn:
                conn.settimeout(2)
                try:
                    reached.append(conn.recv(65536) or b"(connected)")
                except OSError:
                    reached.append(b"(connected)")


def with_client(**changes: Any) -> dict[str, Any]:
    exchange = golden()
    exchange["client"].update(changes)
    return exchange


async def test_the_golden_file_replays_through_the_cli(tmp_path):
    status, out, err = await replay_cli(tmp_path, golden())
    assert (status, err) == (0, []) and "same client-visible result" in out


@pytest.mark.parametrize("shape", ["http://127.0.0.1:{port}/v1/messages",
                                   "//127.0.0.1:{port}/v1/messages",
                                   "http://127.0.0.1:{port}/sessions"])
async def test_a_client_path_to_another_host_reaches_nothing(tmp_path, shape):
    with listener() as (port, reached):
        status, out, err = await replay_cli(
            tmp_path, with_client(path=shape.format(port=port)))
    assert reached == []
    assert status == 2 and out == "" and len(err) == 1
    assert err[0].startswith(f"lmsd: {tmp_path / 'handed-over.json'}: client.path ")
    assert "is not one of lmsd's API routes" in err[0]


@pytest.mark.parametrize(("method", "path"), [
    ("DELETE", "/sessions"), ("POST", "/sessions"), ("DELETE", "/v1/messages"),
    ("PUT", "/session/s1/config"), ("POST", "/session/s1/config"),
    ("POST", "/session/../v1/messages"), ("POST", "/v1/messages/../../sessions"),
    ("POST", "/v1/messages\\..\\x"), ("POST", "/v1/messages\r\nHost: evil"),
    ("POST", "/session/a\n/v1/messages"), ("POST", "v1/messages"), ("POST", "/v1/models"),
    ("POST", "/v1/messages?x=1"), ("POST", "/session//v1/messages"),
    ("post", "/v1/messages"), ("POST", 7), ("POST", None)])
async def test_the_admin_api_and_anything_off_the_proxy_routes_is_refused(
        tmp_path, emulator, start_lmsd, client, method, path):
    lmsd = await start_lmsd(emulator.url)
    emulator.script(Reply(Text("hi")))
    await Conversation(client.with_options(base_url=lmsd.url), session="kept-1").send("hi")
    assert [s["session"] for s in (await admin_get(lmsd, "/sessions")).json()["sessions"]] \
        == ["kept-1"]
    before = len(emulator.log)
    status, out, err = await replay_cli(tmp_path, with_client(method=method, path=path),
                                        "--against", emulator.url)
    assert status == 2 and out == "" and len(err) == 1, err
    assert "client.path" in err[0] or "client.method" in err[0]
    sessions = (await admin_get(lmsd, "/sessions")).json()["sessions"]
    assert [s["session"] for s in sessions] == ["kept-1"]
    # nothing from replay: the running lmsd's own model polls may come meanwhile
    assert [(r.method, r.path) for r in emulator.log[before:] if r.method != "GET"] == []


async def test_the_admin_api_by_absolute_url_is_not_reached(tmp_path, emulator, start_lmsd,
                                                            client):
    lmsd = await start_lmsd(emulator.url)
    emulator.script(Reply(Text("hi")))
    await Conversation(client.with_options(base_url=lmsd.url), session="kept-2").send("hi")
    status, _, err = await replay_cli(
        tmp_path, with_client(method="DELETE", path=f"{lmsd.admin_url}/sessions"))
    assert status == 2 and len(err) == 1
    sessions = (await admin_get(lmsd, "/sessions")).json()["sessions"]
    assert [s["session"] for s in sessions] == ["kept-2"]


@pytest.mark.parametrize("name", ["Authorization", "x-api-key", "Cookie", "Host",
                                  "proxy-authorization", "x-goog-api-key", "X-Forwarded-For"])
async def test_a_forged_header_never_arrives(tmp_path, emulator, name):
    exchange = golden()
    exchange["client"]["headers"][name] = "Bearer forged-by-the-file"
    status, out, err = await replay_cli(tmp_path, exchange, "--against", emulator.url)
    assert status == 2 and out == "" and len(err) == 1
    assert f"client.headers names {name!r}" in err[0]
    assert emulator.log == []  # refused before anything was sent


async def test_against_sends_the_recorded_request_and_only_allowed_headers(tmp_path,
                                                                           emulator):
    emulator.script(Reply(Text("live")))
    status, _, err = await replay_cli(tmp_path, golden(), "--against", emulator.url)
    assert status in (0, 1) and err == []
    assert [r.path for r in emulator.log if r.method == "POST"] == ["/v1/responses"]
    for record in emulator.log:
        assert "forged" not in json.dumps(record.headers)
        assert "authorization" not in {k.lower() for k in record.headers}


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "auto", "http://", "/v1",
                                 "http://127.0.0.1:1/?next=http://evil/"])
async def test_a_bad_against_url_is_one_line(tmp_path, url):
    status, out, err = await replay_cli(tmp_path, golden(), "--against", url)
    assert status == 2 and out == "" and len(err) == 1 and "--against" in err[0]


async def test_recorded_upstream_entries_make_replay_contact_nothing(tmp_path):
    with listener() as (port, reached):
        exchange = golden()
        post = exchange["upstream"][0]
        for path in (f"http://127.0.0.1:{port}/v1/responses",
                     f"//127.0.0.1:{port}/v1/responses"):
            bad = copy.deepcopy(exchange)
            bad["upstream"][0]["path"] = path
            status, _, err = await replay_cli(tmp_path, bad)
            assert status == 2 and len(err) == 1 and "upstream[0].path" in err[0]
        for header in ("location", "Host"):
            bad = copy.deepcopy(exchange)
            bad["upstream"][0]["headers"][header] = f"http://127.0.0.1:{port}/"
            bad["upstream"][0]["status"] = 307
            status, _, err = await replay_cli(tmp_path, bad)
            assert status == 2 and len(err) == 1 and "upstream[0].headers" in err[0]
        # a valid file whose recorded answer is a redirect: answered from the file only
        moved = copy.deepcopy(exchange)
        moved["upstream"].append({**post, "status": 307, "chunks": []})
        moved["upstream"][0]["status"] = 307
        moved["client"]["body"]["metadata"] = {"user_id": f"http://127.0.0.1:{port}/"}
        status, out, _ = await replay_cli(tmp_path, moved)
        assert status == 1 and "differs" in out
    assert reached == []


_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-5, 700), st.text(max_size=4),
                    st.sampled_from(["/v1/messages", "/v1/responses", "POST", "GET",
                                     "/session/x/v1/chat/completions", "chat", "messages",
                                     "content-type", "ChatDialect"]))
_VALUES = st.recursive(_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=2), st.dictionaries(st.text(max_size=3), inner, max_size=2)),
    max_leaves=4)


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list) and len(prefix) < 4:  # not every chunk
        for i, v in enumerate(value[:3]):
            yield from _paths(v, (*prefix, i))


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(list(_paths(golden()))), _VALUES), min_size=1,
                max_size=3))
def test_a_mutated_file_replays_or_is_refused_never_a_traceback(tmp_path, mutations):
    from lmsd.daemon.replay import ReplayError, replay_file
    from lmsd.protocol.recording import FormatError

    exchange = golden()
    for where, value in mutations:
        parent = exchange
        try:
            for step in where[:-1]:
                parent = parent[step]
            parent[where[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    path = tmp_path / "mutated.json"
    path.write_text(json.dumps(exchange), encoding="utf-8")
    try:
        diff, result = trio.run(replay_file, path)
    except (FormatError, ReplayError) as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(diff, list) and isinstance(result["client_stream"], dict)
