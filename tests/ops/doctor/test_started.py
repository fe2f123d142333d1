"""``lmsd doctor`` with models lmsd starts itself (``[[models]]`` with a command): it checks
what the daemon would use (no LM Studio it does not look for), each model's program, file,
size against the budget and slot saving, and with a daemon running a stopped engine is
"stopped (starts on demand)", not unreachable."""

from __future__ import annotations

from pathlib import Path

from lmsd.config import load_settings
from lmsd.ops.doctor import diagnose
from tests.ops.doctor.support import free_port, script, shell
from tests.ops.lmsd_cli import admin_address

GIB = 1024**3


def config(tmp_path: Path, *models: str, top: str = "") -> str:
    path = tmp_path / "lmsd.toml"
    path.write_text(top + "".join(models))
    return str(path)


def model(name: str, *command: str) -> str:
    args = ", ".join(f'"{a}"' for a in [*command, "--port", "${PORT}"])
    return f'[[models]]\nname = "{name}"\ncommand = [{args}]\n'


def settings_of(tmp_path: Path, path: str, **flags: str):
    return load_settings({"config": path, "listen": f"127.0.0.1:{free_port()}",
                          "admin_listen": f"127.0.0.1:{free_port()}",
                          "state_dir": str(tmp_path / "state"), **flags}, {})


def by_check(results) -> dict[str, tuple[str, str, str | None]]:
    return {r.check: (r.status, r.detail, r.fix) for r in results}


async def test_started_models_alone_are_checked_and_no_lm_studio_is(tmp_path):
    server = script(tmp_path / "bin" / "llama-server", "exit 0\n")
    gguf = tmp_path / "coder.gguf"
    gguf.write_bytes(b"GGUF" + bytes(2044))
    path = config(tmp_path, model("coder", "llama-server", "-m", str(gguf),
                                  "--slot-save-path", str(tmp_path / "slots/")))
    settings = settings_of(tmp_path, path, memory_budget="1GiB")
    results = by_check(await diagnose(settings, shell(tmp_path, settings)))
    assert not [c for c in results if c.startswith(("lmstudio", "api", "model ["))], results
    assert results["engine [coder]"] == ("ok", f"{server} runs this model", None)
    assert results["model file [coder]"] == ("ok", f"{gguf} (2.0 KiB)", None)
    assert results["memory [coder]"][:2] == (
        "ok", "needs 2.0 KiB (its model file's size) of memory_budget 1.0 GiB")
    assert results["cache [coder]"][0] == "ok"


async def test_each_thing_a_started_model_lacks_is_named_with_its_fix(tmp_path):
    script(tmp_path / "bin" / "plain-file", "exit 0\n").chmod(0o644)
    big = tmp_path / "big.gguf"
    with big.open("wb") as f:
        f.truncate(3 * GIB)  # sparse: its size is what counts
    path = config(tmp_path,
                  model("ghost", str(tmp_path / "nowhere" / "llama-server"), "-m", str(big)),
                  model("unlisted", "llama-server-nope", "-m", str(tmp_path / "gone.gguf")),
                  model("locked", str(tmp_path / "bin" / "plain-file"), "--model", str(big)))
    settings = settings_of(tmp_path, path, memory_budget="2GiB")
    results = by_check(await diagnose(settings, shell(tmp_path, settings)))
    assert results["engine [ghost]"][:2] == (
        "fail", f"'{tmp_path}/nowhere/llama-server' does not exist")
    assert results["engine [unlisted]"][:2] == (
        "fail", f"'llama-server-nope' is not on PATH ({tmp_path}/bin)")
    assert "absolute path" in results["engine [unlisted]"][2]
    assert results["engine [locked]"][:2] == (
        "fail", f"'{tmp_path}/bin/plain-file' is not executable")
    assert results["model file [unlisted]"][:2] == ("fail", f"{tmp_path}/gone.gguf does not exist")
    status, detail, fix = results["memory [ghost]"]
    assert status == "fail" and detail == (
        "needs 3.0 GiB (its model file's size), more than the whole memory_budget 2.0 GiB: "
        "it can never be loaded") and "raise memory_budget" in fix
    status, detail, fix = results["cache [ghost]"]
    assert status == "warn" and "no --slot-save-path" in detail and "prefilled again" in detail
    assert "--slot-save-path DIR/" in fix
    assert "memory [unlisted]" not in results  # its size is unknown: nothing to compare


async def test_with_the_daemon_running_a_stopped_engine_is_not_unreachable(start_lmsd,
                                                                          tmp_path):
    script(tmp_path / "bin" / "llama-server", "exit 0\n")
    path = config(tmp_path, model("coder", "llama-server"), model("small", "llama-server"))
    server = await start_lmsd("auto", config=path)
    settings = settings_of(tmp_path, path, admin_listen=admin_address(server))
    results = by_check(await diagnose(settings, shell(tmp_path, settings)))
    assert results["upstream [coder]"] == ("ok", "coder: stopped (starts on demand)", None)
    assert results["upstream [small]"] == ("ok", "small: stopped (starts on demand)", None)
    assert not [c for c, (s, *_) in results.items() if c.startswith("lmstudio")], results
