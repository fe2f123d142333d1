"""``lmsd doctor`` on the command line: one line per check, ``--json``, the exit status, a
config error, the marks on a UTF-8 terminal."""

from __future__ import annotations

import json

import trio

from lmsd.ops import doctor
from lmsd.ops.doctor.result import Result
from tests.ops.doctor.support import (  # isolated: autouse, no real LM Studio leaks in
    doctor_args,
    isolated,  # noqa: F401
    prepare_shell,
    settings_for,
)


async def test_run_prints_one_line_per_check_and_exits_0_on_warnings(emulator, tmp_path,
                                                                     monkeypatch, capsys):
    settings = settings_for(tmp_path, emulator.url)
    prepare_shell(tmp_path, monkeypatch, settings)
    args = doctor_args(upstream=emulator.url, listen=settings.listen,
                       admin_listen=settings.admin_listen)
    code = await trio.to_thread.run_sync(doctor.run, args)
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert len(lines) == 15
    assert lines[0].startswith("ok   lmstudio ") and emulator.url in lines[0]
    service = next(line for line in lines if " service " in line)
    assert service.startswith("warn service ") and "; fix: " in service  # no systemctl
    assert all("; fix: " not in line for line in lines if line.startswith("ok "))


async def test_run_exits_1_when_a_check_fails(tmp_path, monkeypatch, capsys, dead_port):
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}")
    prepare_shell(tmp_path, monkeypatch, settings)
    monkeypatch.setenv("LMSD_UPSTREAM", f"http://127.0.0.1:{dead_port}")  # env works too
    args = doctor_args(listen=settings.listen, admin_listen=settings.admin_listen)
    code = await trio.to_thread.run_sync(doctor.run, args)
    out = capsys.readouterr().out
    assert code == 1
    assert out.splitlines()[0].startswith("FAIL lmstudio ")
    assert "; fix: start the server there (LM Studio: `lms server start`)" in out


async def test_run_json(tmp_path, monkeypatch, capsys, dead_port):
    settings = settings_for(tmp_path, f"http://127.0.0.1:{dead_port}")
    prepare_shell(tmp_path, monkeypatch, settings)
    config = tmp_path / "lmsd.toml"
    config.write_text(f'upstream = "http://127.0.0.1:{dead_port}"\n'
                      f'listen = "{settings.listen}"\nadmin_listen = "{settings.admin_listen}"\n')
    code = await trio.to_thread.run_sync(doctor.run, doctor_args(config=str(config),
                                                                 json=True))
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert [set(entry) for entry in data] == [{"check", "status", "detail", "fix"}] * 15
    by_check = {entry["check"]: entry for entry in data}
    assert by_check["lmstudio"]["status"] == "fail"
    assert by_check["model"]["status"] == "skip"
    assert by_check["proxy_port"] == {"check": "proxy_port", "status": "ok",
                                      "detail": f"{settings.listen} is free", "fix": None}


def test_run_reports_a_config_error(tmp_path, capsys):
    code = doctor.run(doctor_args(config=str(tmp_path / "missing.toml")))
    assert code == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL config ") and "not found" in out


def test_marks_on_a_utf8_terminal():
    results = [Result("a", "ok", "fine"), Result("bb", "warn", "hmm", "do x"),
               Result("c", "fail", "broken", "do y"), Result("d", "skip", "later")]
    assert doctor.format_results(results, fancy=True).splitlines() == [
        "✓ a   fine", "! bb  hmm; fix: do x", "✗ c   broken; fix: do y", "- d   later"]
    assert doctor.format_results(results).splitlines() == [
        "ok   a   fine", "warn bb  hmm; fix: do x", "FAIL c   broken; fix: do y",
        "skip d   later"]
