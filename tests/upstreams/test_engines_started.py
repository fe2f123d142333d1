"""The supervisor of engine processes lmsd starts, on small real processes (Python's
http.server standing in for an engine): back-off, output in the log, a start that fails,
and a stop that escalates to SIGKILL. The real llama-server is in
test_started_llama_server.py."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import httpx
import pytest
import trio

from lmsd.config.models import ModelEntry
from lmsd.upstreams.engines_started import Backoff, EngineFailed, StartedEngine

#: An "engine": says hello on both streams, answers /health, and (``ignore-term``)
#: does not stop on SIGTERM, or (``fail``) exits at once, or (``once:PATH``) exits at once
#: while PATH exists, which its first run creates.
ENGINE = r"""
import http.server, os, signal, sys
port, mode = int(sys.argv[1]), sys.argv[2]
print("hello from stdout\nsecond line", flush=True)
print("hello from stderr", file=sys.stderr, flush=True)
if mode == "fail" or (mode.startswith("once:") and os.path.exists(mode[5:])):
    sys.exit(3)
if mode.startswith("once:"):
    open(mode[5:], "w").close()
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, lambda *_: print("ignoring SIGTERM", flush=True))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def engine(mode: str = "serve", **kw) -> ModelEntry:
    return ModelEntry(name="fake", command=(sys.executable, "-c", ENGINE, "${PORT}", mode),
                        **kw)


def records(caplog, name: str) -> list[dict]:
    return [r.lmsd_fields for r in caplog.records if r.getMessage() == name]


def test_backoff_doubles_up_to_its_ceiling_and_a_stable_run_resets_it():
    backoff = Backoff(first=1, ceiling=5, stable_after=60)
    assert [backoff.after_exit(0.5) for _ in range(5)] == [1, 2, 4, 5, 5]
    assert backoff.after_exit(61) == 1
    assert backoff.after_exit(2) == 2


async def test_it_reports_its_url_once_healthy_and_logs_each_output_line(nursery, caplog):
    caplog.set_level(logging.DEBUG, logger="lmsd")
    started = StartedEngine(engine())
    url = await nursery.start(started.run)
    assert url == started.url == f"http://127.0.0.1:{started.port}"
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{url}/health")).status_code == 200
    with trio.fail_after(10):
        while len(records(caplog, "engine.output")) < 3:
            await trio.sleep(0.01)
    lines = {(r["stream"], r["line"]) for r in records(caplog, "engine.output")}
    assert lines == {("stdout", "hello from stdout"), ("stdout", "second line"),
                     ("stderr", "hello from stderr")}
    assert records(caplog, "engine.started")[0]["pid"] == started.pid


async def test_a_first_start_that_fails_says_why_and_leaves_nothing_running(nursery):
    with pytest.raises(EngineFailed, match="exited with code 3 before /health") as failed:
        await nursery.start(StartedEngine(engine("fail")).run)
    assert "hello from" in str(failed.value), "its last output is quoted"


async def test_a_program_that_does_not_exist_is_named_not_crashed_on(nursery, tmp_path):
    missing = str(tmp_path / "no-such-llama-server")
    entry = ModelEntry(name="ghost", command=(missing, "--port", "${PORT}"))
    with pytest.raises(EngineFailed) as failed:
        await nursery.start(StartedEngine(entry).run)
    assert f"ghost: cannot run {missing!r}: No such file or directory" in str(failed.value)


async def test_a_model_whose_program_is_missing_fails_its_request_naming_it(tmp_path, caplog):
    """Through the loader a request waits on: its error and ``model.load_failed`` name
    the program, and the loader goes on serving (no crash out of its nursery)."""
    from lmsd.protocol.failures import ModelUnavailable
    from lmsd.upstreams.models.started import StartedModels

    caplog.set_level(logging.DEBUG, logger="lmsd")
    missing = str(tmp_path / "llama-server")
    models = StartedModels([ModelEntry(name="ghost", command=(missing, "--port", "${PORT}"))])
    async with trio.open_nursery() as nursery:
        await nursery.start(models.run)
        for _ in range(2):  # and again: the next request tries again, and is told again
            with pytest.raises(ModelUnavailable) as failed:
                await models.load("ghost")
            assert f"lmsd could not start ghost: ghost: cannot run {missing!r}: No such " \
                "file or directory" in str(failed.value)
        nursery.cancel_scope.cancel()
    [first, _] = records(caplog, "model.load_failed")
    assert first["model"] == "ghost" and missing in first["error"]


async def test_a_start_that_never_gets_healthy_times_out(nursery):
    spec = engine(health="/not-there", health_timeout=1)
    started = StartedEngine(spec, grace=0.2)
    with pytest.raises(EngineFailed, match="/not-there did not answer 200 within 1 s"):
        await nursery.start(started.run)
    assert not Path(f"/proc/{started.pid}").exists()


async def test_an_engine_deaf_to_sigterm_is_killed_after_the_grace_period(caplog):
    caplog.set_level(logging.DEBUG, logger="lmsd")
    started = StartedEngine(engine("ignore-term"), grace=0.3)
    async with trio.open_nursery() as owner:
        await owner.start(started.run)
        pid = started.pid
        owner.cancel_scope.cancel()
    assert not Path(f"/proc/{pid}").exists()
    assert records(caplog, "engine.killed") == [{"model": "fake", "pid": pid, "grace_s": 0.3}]
    said = [r["line"] for r in records(caplog, "engine.output")]
    assert "ignoring SIGTERM" in said, "what it writes while stopping is still read and logged"


async def test_an_engine_that_exits_is_restarted_after_its_backoff(nursery, caplog):
    caplog.set_level(logging.INFO, logger="lmsd")
    started = StartedEngine(engine(), backoff=Backoff(first=0.05))
    await nursery.start(started.run)
    first = started.pid
    os.kill(first, 9)
    with trio.fail_after(30):
        while started.pid == first or started.url is None:
            await trio.sleep(0.02)
    assert started.restarts == 1
    [crash] = records(caplog, "engine.crashed")
    assert crash["pid"] == first and crash["why"] == "exited with code -9"
    assert records(caplog, "engine.restarted")[0]["pid"] == started.pid


async def test_restarts_that_fail_back_off_longer_and_waiters_get_the_one_that_works(
        nursery, caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="lmsd")
    marker = tmp_path / "ran"
    started = StartedEngine(engine(f"once:{marker}"), backoff=Backoff(first=0.05))
    await nursery.start(started.run)
    ready: list[str] = []

    async def waiter() -> None:
        ready.append(await started.wait_ready())

    os.kill(started.pid, 9)
    with trio.fail_after(30):
        while len(records(caplog, "engine.crashed")) < 3:
            await trio.sleep(0.01)
        nursery.start_soon(waiter)
        while len(records(caplog, "engine.crashed")) < 4:
            await trio.sleep(0.01)
        assert ready == [] and started.url is None
        marker.unlink()
        while not ready:
            await trio.sleep(0.01)
    crashes = records(caplog, "engine.crashed")
    assert [c["restart_in_s"] for c in crashes[:4]] == [0.05, 0.1, 0.2, 0.4]
    assert "exited with code 3 before /health" in crashes[1]["why"]
    assert ready == [started.url]
