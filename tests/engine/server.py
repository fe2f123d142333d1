"""A real llama.cpp engine for tests: llama-cpp-python's server on a tiny generated model.

The engine lives in its own venv (``LMSD_ENGINE_PYTHON``, else the one ``.ci/run`` caches
in ``~/.cache/lmsd-ci``), which ``.ci/run`` builds. Without it the engine tests skip,
unless ``LMSD_REQUIRE_ENGINE=1`` (CI), where they fail instead."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from tests.support.ci_cache import cached

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "engine"
MODEL_ALIAS = "tiny-llama"


def _venv_python(modules: str, what: str) -> str:
    """The engine venv's python if it imports ``modules``; else skip (fail when CI
    requires an engine: ``LMSD_REQUIRE_ENGINE=1`` or ``LMSD_REQUIRE_LLAMA_SERVER=1``)."""
    path = os.environ.get("LMSD_ENGINE_PYTHON") or str(
        cached("venv-engine-*/bin/python", ROOT / ".venv-engine/bin/python"))
    ok = Path(path).exists() and subprocess.run(
        [path, "-c", f"import {modules}"], capture_output=True, check=False).returncode == 0
    if not ok:
        reason = f"no {what} at {path} (bash .ci/run builds it)"
        if "1" in (os.environ.get("LMSD_REQUIRE_ENGINE"),
                   os.environ.get("LMSD_REQUIRE_LLAMA_SERVER")):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def engine_python() -> str:
    """The venv with llama-cpp-python's server (and the model generator's packages)."""
    return _venv_python("llama_cpp.server, gguf, tokenizers", "llama-cpp-python engine")


def model_path(swa: bool = False) -> Path:
    """The tiny model, generated once (about 4 s) and cached under .cache/engine. The file
    is named by a digest of make_model.py, so a changed generator makes a new model.
    ``swa``: its sliding-window twin (``make_model.py --swa``)."""
    script = ROOT / "tests/engine/make_model.py"
    digest = hashlib.sha256(script.read_bytes()).hexdigest()[:12]
    kind = "swa" if swa else "tiny"
    path = CACHE / f"{kind}-{digest}.gguf"
    if not path.exists():
        python = _venv_python("gguf, tokenizers, numpy", "model generator (gguf, tokenizers)")
        CACHE.mkdir(parents=True, exist_ok=True)
        partial_path = path.with_suffix(f".{os.getpid()}.partial")
        subprocess.run([python, str(script), str(partial_path), *(["--swa"] if swa else [])],
                       check=True, capture_output=True)
        partial_path.rename(path)
        for old in CACHE.glob(f"{kind}-*.gguf"):  # models of earlier generators
            if old != path:
                old.unlink(missing_ok=True)
    return path


async def _kill(process: trio.Process) -> None:
    process.send_signal(signal.SIGKILL)  # SIGTERM does not stop it mid-generation


async def start_engine(nursery: trio.Nursery, *, n_ctx: int = 32768,
                       interrupt_requests: bool = False, log_path: Path | None = None) -> str:
    """Serve the tiny model on a free port until the nursery ends; return its URL.
    ``interrupt_requests``: the server's default, where any other request ends the
    answer being streamed (off unless a test is about it). ``log_path``: the engine's
    own output (else ``LMSD_ENGINE_LOG``, else nowhere)."""
    import socket

    python, model = engine_python(), model_path()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [python, "-m", "llama_cpp.server", "--model", str(model), "--model_alias",
            MODEL_ALIAS, "--n_ctx", str(n_ctx), "--n_threads", "2", "--n_threads_batch", "2",
            "--flash_attn", "true", "--host", "127.0.0.1", "--port", str(port)]
    if not interrupt_requests:
        args += ["--interrupt_requests", "false"]
    log = open(log_path or os.environ.get("LMSD_ENGINE_LOG", os.devnull), "ab")  # noqa: SIM115
    await nursery.start(partial(trio.run_process, args, check=False, deliver_cancel=_kill,
                                stdout=log, stderr=log))
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as http:
        with trio.fail_after(60):
            while True:
                try:
                    if (await http.get(f"{url}/v1/models")).status_code == 200:
                        return url
                except httpx.TransportError:
                    pass
                await trio.sleep(0.1)
