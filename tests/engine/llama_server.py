"""llama.cpp's own ``llama-server`` for tests, on the tiny generated model.

The binary comes from ``LMSD_LLAMA_SERVER`` (else the one ``.ci/run`` caches in
``~/.cache/lmsd-ci/llama-server/``, ``$LMSD_CI_CACHE`` when set), which ``.ci/run``
builds from the llama.cpp tree vendored in llama-cpp-python's sdist.
Without it the tests skip, unless ``LMSD_REQUIRE_LLAMA_SERVER=1`` (CI), where they fail.

``start_llama_server`` returns a ``LlamaServer`` handle: tests that check failover
``kill()`` it mid-session and ``restart()`` it on the same port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trio

from tests.support.processes import free_port

from .server import MODEL_ALIAS, model_path

DEFAULT_BINARY = Path(os.environ.get("LMSD_CI_CACHE") or Path(
    os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lmsd-ci") / \
    "llama-server" / "llama-server"
#: Token ids in the tiny model's vocabulary (make_model.py trains its specials first).
SPECIAL_IDS = {"<|im_end|>": 2, "<tool_call>": 3, "</tool_call>": 4}
#: What makes the random model emit exactly one grammar-valid call under
#: ``tool_choice: "required"`` (llama-server's grammar allows free text before the
#: ``<tool_call>`` trigger, so ``required`` alone does not force one): ``<tool_call>``
#: first, ``</tool_call>`` to close, then ``<|im_end|>`` above a second call (greedy: with
#: sampling a second call comes now and then). Any other request gets an empty answer
#: (``<|im_end|>`` at once).
FORCED_TOOL_CALLS = ("--logit-bias", "3+150", "--logit-bias", "4+30", "--logit-bias", "2+300")


def llama_server_binary() -> Path:
    """The llama-server to run, or skip (fail under LMSD_REQUIRE_LLAMA_SERVER=1)."""
    path = Path(os.environ.get("LMSD_LLAMA_SERVER") or DEFAULT_BINARY)
    ok = path.is_file() and os.access(path, os.X_OK) and subprocess.run(
        [str(path), "--version"], capture_output=True, check=False, timeout=30).returncode == 0
    if not ok:
        reason = f"no llama-server at {path} (bash .ci/run builds it)"
        if os.environ.get("LMSD_REQUIRE_LLAMA_SERVER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@dataclass
class LlamaServer:
    """One llama-server process on a fixed port; killable and restartable."""

    nursery: trio.Nursery
    args: list[str]
    port: int
    log_path: Path
    process: trio.Process | None = None
    starts: int = 0
    _exited: trio.Event = field(default_factory=trio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> str:
        """Run the server (again, on the same port); return its URL once ``/health``
        answers 200 (it says 503 while the model loads)."""
        if self.process is not None and self.process.returncode is None:
            raise RuntimeError("llama-server is already running")
        self._exited = trio.Event()
        self.process = await self.nursery.start(self._run, self._exited)
        self.starts += 1
        async with httpx.AsyncClient() as http:
            with trio.move_on_after(60) as waiting:
                while True:
                    if self._exited.is_set():
                        break
                    try:
                        if (await http.get(f"{self.url}/health")).status_code == 200:
                            return self.url
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.05)
        why = "exited" if self._exited.is_set() else "did not answer /health in 60 s"
        if waiting.cancelled_caught:
            await self.kill()
        raise RuntimeError(f"llama-server {why}; its log ends:\n{self.log_tail()}")

    async def _run(self, exited: trio.Event,
                   task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED
                   ) -> None:
        try:
            with open(self.log_path, "ab") as log:
                await trio.run_process(self.args, check=False, deliver_cancel=_kill,
                                       stdout=log, stderr=log, task_status=task_status)
        finally:
            exited.set()

    async def kill(self) -> None:
        """SIGKILL, as a crash would end it; returns once it is gone."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
        await self._exited.wait()

    async def restart(self) -> str:
        """Kill it if it runs, then start it again on the same port (with an empty cache)."""
        await self.kill()
        return await self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


async def _kill(process: trio.Process) -> None:
    process.send_signal(signal.SIGKILL)


async def start_llama_server(nursery: trio.Nursery, *, n_ctx: int = 32768,
                             slots: int | None = 1,
                             forced_tool_calls: bool = False,
                             extra_args: Sequence[str] = (),
                             log_path: Path | None = None, swa: bool = False
                             ) -> LlamaServer:
    """Serve the tiny model with ``--jinja`` on a free port until the nursery ends.

    One slot by default (``slots=None``: the engine's own default, ``-np`` auto with
    unified KV): a single conversation's prefix stays in the KV cache, so what
    lmsd does to the prefix shows in ``cached_tokens``. Greedy sampling (``--temp 0``,
    unless a request says otherwise) makes every answer reproducible. ``forced_tool_calls`` adds
    ``FORCED_TOOL_CALLS``. The log goes to ``LMSD_ENGINE_LOG`` when set, else to a
    temporary file (its tail is shown when the server does not come up); ``log_path``, when
    given, is kept instead (a benchmark reads what the engine prefilled from it).
    """
    binary, model = llama_server_binary(), model_path(swa)
    port = free_port()
    args = [str(binary), "--model", str(model), "--alias", MODEL_ALIAS, "--jinja",
            "--ctx-size", str(n_ctx), *(("--parallel", str(slots)) if slots else ()),
            "--threads", "2", "--threads-batch", "2", "--host", "127.0.0.1", "--port", str(port),
            "--no-webui", "--temp", "0",
            *(FORCED_TOOL_CALLS if forced_tool_calls else ()), *extra_args]
    log = os.environ.get("LMSD_ENGINE_LOG")
    if log_path is None and log:
        log_path = Path(log)
    elif log_path is None:
        fd, name = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
        nursery.start_soon(_remove_at_end, log_path)
    server = LlamaServer(nursery, args, port, log_path)
    await server.start()
    if forced_tool_calls:
        async with httpx.AsyncClient() as http:
            tokens = (await http.post(f"{server.url}/tokenize", json={
                "content": "".join(SPECIAL_IDS), "parse_special": True})).json()["tokens"]
        assert tokens == list(SPECIAL_IDS.values()), f"the model's special ids: {tokens}"
    return server


async def _remove_at_end(path: Path) -> None:
    try:
        await trio.sleep_forever()
    finally:
        path.unlink(missing_ok=True)
