"""The real ``python -m lmsd doctor`` (issue 23, Major 2 and 3): one line per check whatever
the upstream answers (a key it requires, missing or wrong, and ``--json``), an unexpected
exception in a check is that check's FAIL, and with a daemon running doctor checks the
upstream the daemon uses, not localhost:1234."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import trio

from lmsd.config import load_settings
from lmsd.ops import doctor
from lmsd.ops.doctor import runner
from lmsd.ops.doctor import upstream as doctor_upstream
from lmsd.upstreams import discovery
from tests.support.processes import free_port, start_daemon
from tests.support.upstream_key import KEY, NEEDS_KEY

DOCTOR = [sys.executable, "-m", "lmsd", "doctor"]


def doctor_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A shell with no lmsd settings, no LM Studio, no daemon on the default ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LMSD_", "ANTHROPIC_"))}
    return {**env, "HOME": str(tmp_path / "home"), "LMSTUDIO_HOME": str(tmp_path / "nolms"),
            "PATH": os.path.dirname(sys.executable), "NO_COLOR": "1",
            "LMSD_STATE_DIR": str(tmp_path / "state"),
            "LMSD_LISTEN": f"127.0.0.1:{free_port()}",
            "LMSD_ADMIN_LISTEN": f"127.0.0.1:{free_port()}", **extra}


async def run_doctor(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    done = await trio.run_process([*DOCTOR, *args], capture_stdout=True, capture_stderr=True,
                                  check=False, env=env)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def lines_of(out: str) -> dict[str, str]:
    """Each printed line by its check (the words after the status)."""
    found: dict[str, str] = {}
    for line in out.splitlines():
        status, _, rest = line.partition(" ")
        check = rest.strip().split("  ")[0]
        found[check] = f"{status} {rest.strip()[len(check):].strip()}"
    return found


async def test_doctor_reports_a_required_key_without_crashing(emulator, tmp_path):
    emulator.api_key = KEY
    for key, said in (("", NEEDS_KEY), ("sk-lm-Zz99:Yy88", "LM Studio refused the API key")):
        env = doctor_env(tmp_path, LMSD_UPSTREAM_API_KEY=key)
        code, out, err = await run_doctor(env, "--upstream", emulator.url)
        assert code == 1 and err == "", err[-2000:]
        assert "Traceback" not in out and "ExceptionGroup" not in out
        lines = lines_of(out)
        assert lines["api key"].startswith(f"FAIL {said}"), out
        assert lines["lmstudio"].startswith("ok "), out
        for check in ("proxy port", "admin port", "state dir", "claude context"):
            assert check in lines, (check, out)  # every check still has its line
        code, out, err = await run_doctor(env, "--upstream", emulator.url, "--json")
        assert code == 1 and err == "", err[-2000:]
        results = {r["check"]: r for r in json.loads(out)}
        assert results["api_key"]["status"] == "fail"
        assert results["api_key"]["detail"].startswith(said)


async def test_an_exception_in_a_check_is_its_fail_line(emulator, tmp_path, monkeypatch,
                                                        dead_port):
    monkeypatch.setattr(discovery, "DEFAULT_PORT", dead_port)

    async def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "check_cache", boom)
    monkeypatch.setattr(runner, "check_port", boom)
    settings = load_settings({"upstream": emulator.url, "state_dir": str(tmp_path / "s"),
                              "admin_listen": f"127.0.0.1:{free_port()}"}, {})
    results = await doctor.diagnose(settings, {"HOME": str(tmp_path)})
    failed = [(r.check, r.detail) for r in results if r.status == "fail"]
    assert ("cache", "the check failed: RuntimeError: boom") in failed
    assert sum(d == "the check failed: RuntimeError: boom" for _, d in failed) == 3
    assert {r.check for r in results} >= {"lmstudio", "api", "model", "state_dir"}
    monkeypatch.setattr(doctor_upstream, "discover", boom)  # the first check of all
    results = await doctor.diagnose(settings, {"HOME": str(tmp_path)})
    assert [r.status for r in results if r.check == "lmstudio"] == ["fail"]


async def test_doctor_checks_the_upstream_the_running_daemon_uses(emulator, nursery,
                                                                  tmp_path):
    env = doctor_env(tmp_path)
    process, _, admin = await start_daemon(nursery, "--upstream", emulator.url, env=env)
    try:
        env["LMSD_ADMIN_LISTEN"] = admin.removeprefix("http://")
        code, out, err = await run_doctor(env)  # no --upstream: doctor alone would say auto
        assert err == "", err[-2000:]
        lines = lines_of(out)
        assert lines["lmstudio"] == (f"ok LM Studio at {emulator.url} (found by: the "
                                     f"running daemon) answers"), out
        assert lines["model"].startswith("ok loaded: qwen/qwen3-coder-30b"), out
        assert "1234" not in out and "localhost" not in out
        code, out, _ = await run_doctor(env, "--json")
        results = {r["check"]: r for r in json.loads(out)}
        assert emulator.url in results["lmstudio"]["detail"]
    finally:
        process.terminate()
        with trio.fail_after(20):
            await process.wait()


async def test_doctor_names_each_upstream_the_daemon_uses(emulator, nursery, tmp_path,
                                                         dead_port):
    env = doctor_env(tmp_path)
    down = f"http://127.0.0.1:{dead_port}"
    process, _, admin = await start_daemon(
        nursery, "--upstream", emulator.url, "--upstream", down, env=env)
    try:
        env["LMSD_ADMIN_LISTEN"] = admin.removeprefix("http://")
        code, out, err = await run_doctor(env)
        assert code == 1 and err == "", err[-2000:]
        lines = lines_of(out)
        studio, box = (f"[{url.removeprefix('http://')}]" for url in (emulator.url, down))
        assert lines[f"lmstudio {studio}"].startswith("ok "), out
        assert lines[f"lmstudio {box}"].startswith(
            f"FAIL the upstream server at {down} (found by: the running daemon) is not "
            "reachable"), out
        assert "1234" not in out
    finally:
        process.terminate()
        with trio.fail_after(20):
            await process.wait()



async def test_doctor_names_llama_server_and_its_slot_context(nursery, tmp_path, monkeypatch,
                                                              dead_port):
    from tests.emulator import Emulator, serve_emulator
    from tests.support.daemon import MODEL

    monkeypatch.setattr(discovery, "DEFAULT_PORT", dead_port)
    emu = Emulator()
    emu.lmstudio_api, emu.llama_server = False, True  # as llama-server answers
    emu.models[MODEL].context_length = 8192
    url = await serve_emulator(nursery, emu)
    settings = load_settings({"upstream": url, "state_dir": str(tmp_path / "s"),
                              "admin_listen": f"127.0.0.1:{free_port()}"}, {})
    results = {r.check: r for r in await doctor.diagnose(settings, {"HOME": str(tmp_path)})}
    assert results["lmstudio"].detail == f"llama-server at {url} (found by: config) answers"
    model = results["model"]
    assert model.status == "warn"
    assert model.detail.startswith(f"llama-server serves {MODEL} with 8192 tokens of context "
                                   "per slot, below min_context 32768")
    assert "LM Studio" not in model.detail + (model.fix or "")
