"""Models lmsd starts itself: docs/models.md's "llama-server: two models" config, run with real
llama-server processes on the two tiny generated models (the plain one and its sliding-window
twin, two files). lmsd starts each engine when a request names its model, stops it to make
room (budget, group) or when idle (ttl), restarts it after a kill -9, and stops every one
with itself. Waits are on events, bounded; nothing is timed. Skipped without the harness."""

from __future__ import annotations

import json
import os
import re
import signal
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from lmsd.upstreams.models.view import models_json
from tests.engine.llama_server import llama_server_binary
from tests.engine.server import model_path

pytestmark = pytest.mark.engine
DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"
WAIT = 120  # seconds: a start on a shared 2-core box


def doc_config() -> dict[str, Any]:
    """The TOML block of the docs' "llama-server: two models" section, parsed."""
    section = DOC.read_text().split("## llama-server: two models", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block, "docs/models.md has the two-model example"
    return tomllib.loads(block.group(1))


def toml(config: dict[str, Any]) -> str:
    """Top-level keys, then each [[models]] table (JSON strings and lists are TOML)."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in config.items() if k != "models"]
    for model in config["models"]:
        lines += ["", "[[models]]", *(f"{k} = {json.dumps(v)}" for k, v in model.items())]
    return "\n".join(lines) + "\n"


def our_models(**extra: Any) -> dict[str, Any]:
    """The docs' config with our binary, the tiny models and a small context; ``extra``:
    keys added to every [[models]] table (a group)."""
    config = doc_config()
    files = [model_path(), model_path(swa=True)]
    for model, file in zip(config["models"], files, strict=True):
        command = model["command"]
        command[0] = str(llama_server_binary())
        command[command.index("--model") + 1] = str(file)
        command[command.index("--ctx-size") + 1] = "4096"
        command += ["--parallel", "1", "--threads", "2", "--threads-batch", "2",
                    "--no-webui", "--temp", "0"]
        model["health_timeout"] = WAIT
        model.update(extra)
    return config


class Seen:
    """Every event of the daemon (but the engines' output lines), as it happens."""

    def __init__(self, server: Any) -> None:
        self.events: list[dict[str, Any]] = []
        server.bus.add_listener(self._add)

    def _add(self, event: dict[str, Any]) -> None:
        if event.get("type") != "engine.output":
            self.events.append(event)

    def of(self, kind: str, **fields: Any) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind
                and all(e.get(k) == v for k, v in fields.items())]

    async def wait(self, kind: str, count: int = 1, **fields: Any) -> dict[str, Any]:
        with trio.fail_after(WAIT):
            while len(self.of(kind, **fields)) < count:
                await trio.sleep(0.05)
        return self.of(kind, **fields)[count - 1]


async def lmsd_with(start_lmsd, tmp_path: Path, config: dict[str, Any], **settings: str):
    path = tmp_path / "config.toml"
    path.write_text(toml(config))
    server = await start_lmsd("auto", config=str(path), ping_interval="0.2", **settings)
    return server, Seen(server)


def names(config: dict[str, Any]) -> tuple[str, str]:
    first, second = (m["name"] for m in config["models"])
    return first, second


async def ask(http: httpx.AsyncClient, model: str, session: str = "started") -> dict:
    answer = await http.post("/v1/messages", headers={"X-Claude-Code-Session-Id": session},
                             json={"model": model, "max_tokens": 4,
                                   "messages": [{"role": "user", "content": "hello"}]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["type"] == "message"
    return answer.json()


def client(server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, timeout=WAIT)


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def gone(pid: int) -> None:
    with trio.fail_after(WAIT):
        while alive(pid):
            await trio.sleep(0.05)


def pid_of(seen: Seen, model: str, count: int = 1) -> int:
    return seen.of("engine.started", model=model)[count - 1]["pid"]


def backend(server, name: str):
    found = server.router.backend(name)
    assert found is not None
    return found


async def test_a_session_switches_between_two_started_models(start_lmsd, tmp_path):
    config = our_models()
    a, b = names(config)
    server, seen = await lmsd_with(start_lmsd, tmp_path, config)
    assert [x.name for x in server.router.backends] == [a, b]  # no LM Studio looked for
    assert not seen.of("engine.started")  # nothing runs before a request names it
    async with client(server) as http:
        listed = {m["id"]: m for m in (await http.get("/v1/models")).json()["data"]}
        assert (listed[a]["loaded"], listed[b]["loaded"]) == (False, False), listed
        await ask(http, a)
        await ask(http, b)
        await ask(http, a)
        listed = {m["id"]: m for m in (await http.get("/v1/models")).json()["data"]}
        assert (listed[a]["loaded"], listed[b]["loaded"]) == (True, True), listed
    for name in (a, b):
        [started] = seen.of("engine.started", model=name)
        assert started["url"] == backend(server, name).base_url, "answered by its engine"
        assert alive(started["pid"])
        assert len(seen.of("model.load", model=name)) == 1
    assert backend(server, a).served == 2 and backend(server, b).served == 1
    assert not seen.of("upstream.down") and not seen.of("model.unload")
    await backend(server, a).watcher.poll_once()  # the daemon's watcher looks every 5 s
    rows = {r["name"]: r for r in models_json(server.router.backends)["models"]}
    assert rows[a]["loaded"] and rows[a]["context_length"] == 4096  # its engine's /props


async def test_requests_during_a_start_wait_for_that_one_start(start_lmsd, tmp_path):
    config = our_models()
    a, _ = names(config)
    server, seen = await lmsd_with(start_lmsd, tmp_path, config)
    answers: dict[str, Any] = {}

    async def plain(http: httpx.AsyncClient) -> None:
        answers["plain"] = await ask(http, a)

    async def streamed(http: httpx.AsyncClient) -> None:
        async with http.stream("POST", "/v1/messages", json={
                "model": a, "max_tokens": 4, "stream": True,
                "messages": [{"role": "user", "content": "hi"}]}) as r:
            answers["status"] = r.status_code
            answers["events"] = [line.removeprefix("event: ") async for line in
                                 r.aiter_lines() if line.startswith("event: ")]

    async with client(server) as http, trio.open_nursery() as nursery:
        nursery.start_soon(plain, http)
        await seen.wait("model.loading", model=a)
        assert not seen.of("engine.started")  # the engine is still coming up
        nursery.start_soon(streamed, http)
        await seen.wait("request.waiting_for_reload", model=a)
    events = answers["events"]
    assert answers["status"] == 200 and answers["plain"]["type"] == "message"
    assert events[0] == "message_start" and events[-1] == "message_stop"
    # (pings while it waits: tests/upstreams/test_load_on_request.py holds a load open;
    # a real engine's start may end before the first ping is due)
    assert len(seen.of("engine.started", model=a)) == 1, "one start for both"
    assert len(seen.of("model.load", model=a)) == 1


async def test_a_model_file_that_is_not_there_reaches_the_client_in_the_engines_words(
        start_lmsd, tmp_path):
    """llama-server exits at once on a missing -m file; its own line naming the file is
    what the request answers with (and ``model.load_failed``), not a bare 500."""
    config = our_models()
    a, _ = names(config)
    command = config["models"][0]["command"]
    missing = str(tmp_path / "gone.gguf")
    command[command.index("--model") + 1] = missing
    server, seen = await lmsd_with(start_lmsd, tmp_path, config)
    async with client(server) as http:
        answer = await http.post("/v1/messages", json={
            "model": a, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 503, answer.text
    message = answer.json()["error"]["message"]
    assert f"lmsd could not start {a}" in message and "exited with code 1" in message
    assert f"failed to open GGUF file '{missing}' (No such file or directory)" in message
    failed = await seen.wait("model.load_failed", model=a)
    assert missing in failed["error"]


async def swap_out_and_back(server, seen: Seen, cause: str) -> None:
    a, b = (x.name for x in server.router.backends)
    async with client(server) as http:
        await ask(http, a)
        first = pid_of(seen, a)
        await ask(http, b)
        unload = await seen.wait("model.unload", model=a)
        assert unload["cause"] == cause and unload["swap_for"] == b
        assert not alive(first), "its process is gone"
        assert alive(pid_of(seen, b))
        # stopped on purpose: no outage, still routed to
        left = backend(server, a)
        assert left.trouble(trio.current_time()) is None and left.breaker.state == "closed"
        await ask(http, a)  # started again, and the other one leaves for it
        await seen.wait("model.unload", model=b)
        assert not alive(pid_of(seen, b))
    assert len(seen.of("engine.started", model=a)) == 2
    assert not seen.of("upstream.down") and not seen.of("upstream.out")
    assert len(seen.of("model.swap")) == 2


async def test_past_the_memory_budget_the_other_model_is_stopped(start_lmsd, tmp_path):
    config = our_models()
    fits_one = max(model_path().stat().st_size, model_path(swa=True).stat().st_size) * 3 // 2
    server, seen = await lmsd_with(start_lmsd, tmp_path, config, memory_budget=str(fits_one))
    await swap_out_and_back(server, seen, "budget")


async def test_a_group_takes_turns(start_lmsd, tmp_path):
    server, seen = await lmsd_with(start_lmsd, tmp_path, our_models(group="main"))
    await swap_out_and_back(server, seen, "group")


async def test_an_idle_engine_is_stopped_after_its_ttl(start_lmsd, tmp_path):
    config = our_models()
    a, _ = names(config)
    server, seen = await lmsd_with(start_lmsd, tmp_path, config, model_ttl="2")
    async with client(server) as http:
        await ask(http, a)
        unload = await seen.wait("model.unload", model=a)
        assert unload["cause"] == "ttl"
        await gone(pid_of(seen, a))
        assert not seen.of("upstream.down")
        await ask(http, a)  # a request starts it again
    assert len(seen.of("engine.started", model=a)) == 2


async def test_a_killed_engine_is_restarted_and_serves_the_next_request(start_lmsd, tmp_path):
    config = our_models()
    a, _ = names(config)
    server, seen = await lmsd_with(start_lmsd, tmp_path, config)
    async with client(server) as http:
        await ask(http, a)
        first = pid_of(seen, a)
        os.kill(first, signal.SIGKILL)
        crashed = await seen.wait("engine.crashed", model=a)
        assert crashed["pid"] == first
        restarted = await seen.wait("engine.restarted", model=a)
        assert restarted["pid"] != first and alive(restarted["pid"])
        await ask(http, a)
    assert restarted["url"] == backend(server, a).base_url
    assert len(seen.of("engine.started", model=a)) == 1  # restarted, not started anew
    if backend(server, a).keeper.enabled:  # keep_warm hears its cache is gone
        assert any("restarted after a crash" in e["why"] for e in seen.of("cache.lost"))


async def test_stopping_lmsd_stops_every_engine_it_started(start_lmsd, tmp_path):
    config = our_models()
    a, b = names(config)
    server, seen = await lmsd_with(start_lmsd, tmp_path, config)
    async with client(server) as http:
        await ask(http, a)
        await ask(http, b)
    pids = [pid_of(seen, a), pid_of(seen, b)]
    assert all(alive(pid) for pid in pids)
    server.shutdown.set()
    for pid in pids:
        await gone(pid)


async def test_a_conversation_swapped_out_and_back_restores_its_cache(start_lmsd, tmp_path):
    """Across a swap: before lmsd stops the engine it saves the conversation's slot; when
    the model comes back, the conversation's next turn restores it and prefills only what
    is new (the plain model: its restores keep what they save)."""
    config = our_models()
    slots = tmp_path / "slots"
    slots.mkdir()
    for model in config["models"]:
        model["command"] += ["--slot-save-path", str(slots)]
    a, b = names(config)
    fits_one = max(model_path().stat().st_size, model_path(swa=True).stat().st_size) * 3 // 2
    server, seen = await lmsd_with(start_lmsd, tmp_path, config, memory_budget=str(fits_one))
    system = " ".join(f"Rule {i}: keep the code tidy and the tests honest." for i in range(120))
    history = [{"role": "user", "content": "hello"}]

    async def turn(http: httpx.AsyncClient, model: str, messages: list) -> dict:
        answer = await http.post("/v1/messages", headers={
            "X-Claude-Code-Session-Id": "swapped"}, json={
            "model": model, "max_tokens": 4, "system": system, "messages": messages})
        assert answer.status_code == 200, answer.text
        return answer.json()

    async with client(server) as http:
        first = await turn(http, a, history)
        prompt = first["usage"]["input_tokens"] + first["usage"].get(
            "cache_read_input_tokens", 0)
        assert prompt > 1000
        await turn(http, b, [{"role": "user", "content": "a side question"}])
        saved = await seen.wait("cache.saved", upstream=a)
        assert saved["conversation"] == f"swapped/main@{a}" and "stops" in saved["why"]
        await seen.wait("model.unload", model=a)
        history += [{"role": "assistant", "content": first["content"] or "ok"},
                    {"role": "user", "content": "and now?"}]
        back = await turn(http, a, history)
    restored = await seen.wait("cache.restored", upstream=a)
    assert restored["conversation"] == f"swapped/main@{a}"
    cached = back["usage"].get("cache_read_input_tokens", 0)
    assert cached >= prompt * 0.9, (back["usage"], prompt)


@pytest.mark.cli
async def test_claude_code_switches_between_started_models_in_one_session(start_lmsd, tmp_path):
    """The real Claude Code CLI, ``--model`` per run and ``--resume`` between them, on the
    two engines lmsd starts, with a budget that holds one: each switch stops one engine and
    starts the other, and every run answers."""
    import uuid

    from tests.support.claude_cli import run_claude

    config = our_models()
    for model in config["models"]:  # Claude Code's system prompt and tools take ~20k
        command = model["command"]
        command[command.index("--ctx-size") + 1] = "32768"
    a, b = names(config)
    fits_one = max(model_path().stat().st_size, model_path(swa=True).stat().st_size) * 3 // 2
    server, seen = await lmsd_with(start_lmsd, tmp_path, config, memory_budget=str(fits_one),
                                   max_tokens_cap="16")
    (tmp_path / "tmp").mkdir()
    session = str(uuid.uuid4())
    for model, resume in ((a, False), (b, True), (a, True)):
        flags = ["--model", model, *(["--resume", session] if resume else
                                     ["--session-id", session])]
        run = await run_claude(server.url, "say hello", home=tmp_path / "home", cwd=tmp_path,
                               allowed_tools=[], extra_args=flags, timeout=300,
                               extra_env={"TMPDIR": str(tmp_path / "tmp")})
        assert run.returncode == 0, run.stderr + run.stdout
        assert run.result is not None and run.result.get("is_error") is False, run.stdout
    started = [e for e in seen.of("request.start") if e.get("session") == session]
    assert [e["model"] for e in started if e["model"] in (a, b)][-3:] == [a, b, a]
    assert len(seen.of("engine.started", model=a)) == 2
    assert len(seen.of("engine.started", model=b)) == 1
    assert [e["unloaded"] for e in seen.of("model.swap")] == [[a], [b]]


async def test_a_sessions_first_side_request_starts_the_first_model(start_lmsd, tmp_path):
    """Claude Code's title request (a haiku-class name) may come first, before any engine
    runs: it goes to the first [[models]] entry and starts it (it was a 503, "no upstream
    can serve", found by bench/day_switch.py --box llama-server)."""
    config = our_models()
    a, b = names(config)
    server, seen = await lmsd_with(start_lmsd, tmp_path, config)
    async with client(server) as http:
        await ask(http, "claude-haiku-4-5")
        await ask(http, "claude-sonnet-4-6")  # the running one serves Claude's names now
    assert len(seen.of("engine.started", model=a)) == 1
    assert not seen.of("engine.started", model=b)
    assert not seen.of("request.rejected")
