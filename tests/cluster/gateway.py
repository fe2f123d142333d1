"""SGLang's model gateway (SMG, PyPI ``smg``) as a test process, in front of real
llama-servers, and what the tests read from both sides: the gateway's own view (its
``smg_worker_requests_total{worker=...}`` and the ``x-smg-routed-worker-id`` it answers
with) and each engine's (``llamacpp:prompt_tokens_total``: the tokens it prefilled).

The binary: ``LMSD_SMG_BIN``, else ``.venv-smg/bin/smg`` in the checkout, else ``smg`` on
PATH (``.ci/run`` installs the pinned one into a cached venv). Without one the tests skip,
unless ``LMSD_REQUIRE_SMG=1`` (CI), where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio

from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
#: The header lmsd's session key is read from (one of lmsd's default affinity_headers).
KEY_HEADER = "x-smg-routing-key"
ROUTED_HEADER = "x-smg-routed-worker-id"
_SAMPLE = re.compile(r'^(\S+?)\{([^}]*)\} (\S+)$')


def smg_binary() -> Path:
    """The SMG launcher to run, or skip (fail under LMSD_REQUIRE_SMG=1)."""
    found = os.environ.get("LMSD_SMG_BIN") or (
        str(ROOT / ".venv-smg/bin/smg") if (ROOT / ".venv-smg/bin/smg").exists()
        else shutil.which("smg"))
    path = Path(found) if found else None
    ok = path is not None and path.is_file() and os.access(path, os.X_OK)
    if not ok:
        reason = ("SMG is not installed (pip install smg==1.13.0 into .venv-smg, or set "
                  "LMSD_SMG_BIN; bash .ci/run does it)")
        if os.environ.get("LMSD_REQUIRE_SMG") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    assert path is not None
    return path


def samples(text: str, name: str) -> dict[str, float]:
    """``name``'s Prometheus samples in ``text``, by their label text ("" for none)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + " "):
            found[""] = float(line.split()[1])
        elif line.startswith(name + "{") and (m := _SAMPLE.match(line)):
            found[m.group(2)] = float(m.group(3))
    return found


async def prefilled(http: httpx.AsyncClient, engine_url: str) -> int:
    """The tokens the llama-server at ``engine_url`` prefilled so far (its own count;
    cached tokens are not in it). It needs ``--metrics``."""
    answer = await http.get(f"{engine_url}/metrics")
    answer.raise_for_status()
    return int(samples(answer.text, "llamacpp:prompt_tokens_total")[""])


@dataclass
class Gateway:
    """One SMG process in front of ``workers``."""

    process: trio.Process
    port: int
    metrics_port: int
    workers: list[str]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def worker_requests(self, http: httpx.AsyncClient) -> dict[str, int]:
        """Requests the gateway sent to each worker (its ``smg_worker_requests_total``)."""
        text = (await http.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        counts = {w: 0 for w in self.workers}
        for labels, value in samples(text, "smg_worker_requests_total").items():
            worker = re.search(r'worker="([^"]+)"', labels)
            if worker and worker.group(1) in counts:
                counts[worker.group(1)] += int(value)
        return counts

    async def healthy(self, http: httpx.AsyncClient) -> dict[str, bool]:
        """Each worker's health as the gateway sees it (``smg_worker_health``)."""
        text = (await http.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        health = {w: False for w in self.workers}
        for labels, value in samples(text, "smg_worker_health").items():
            worker = re.search(r'worker="([^"]+)"', labels)
            if worker and worker.group(1) in health:
                health[worker.group(1)] = value == 1
        return health

    async def manual_branches(self, http: httpx.AsyncClient) -> dict[str, int]:
        """How the ``manual`` policy placed each request (``smg_manual_policy_branch_total``):
        ``vacant`` a new routing key, ``occupied_hit`` a known key on its worker,
        ``occupied_miss`` a known key whose worker died (moved), ``no_routing_id``."""
        text = (await http.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        found = samples(text, "smg_manual_policy_branch_total")
        return {re.sub(r'branch="([^"]+)"', r"\1", k): int(v) for k, v in found.items()}

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace")
        return "\n".join(re.sub(r"\x1b\[[0-9;]*m", "", t) for t in text.splitlines()[-lines:])


def launch_args(binary: Path, workers: Sequence[str], *, port: int, metrics_port: int,
                policy: str, key_headers: Sequence[str] = (KEY_HEADER,),
                extra: Sequence[str] = ()) -> list[str]:
    """The gateway's command line (README's "A cluster" shows the same): the default
    ``sglang`` backend, whose HTTP router applies the policy to llama-server workers
    (``--backend openai`` proxies to one external provider and ignores it), with fast
    health checks so a dead worker (its port refuses at once) is dropped within a few
    seconds, but a long timeout and three failures in a row: an engine busy prefilling
    on a loaded machine answers ``/health`` late, and one late answer moved a key."""
    return [str(binary), "launch", "--host", "127.0.0.1", "--port", str(port),
            "--worker-urls", *workers, "--policy", policy,
            *(("--routing-key-headers", *key_headers) if key_headers else ()),
            "--prometheus-host", "127.0.0.1", "--prometheus-port", str(metrics_port),
            "--disable-tokenizer-autoload", "--health-check-interval-secs", "1",
            "--health-failure-threshold", "3", "--health-check-timeout-secs", "30",
            "--log-level", "debug", *extra]


async def start_gateway(nursery: trio.Nursery, workers: Sequence[str], *,
                        policy: str = "manual", key_headers: Sequence[str] = (KEY_HEADER,),
                        extra: Sequence[str] = ()) -> Gateway:
    """SMG on free ports until the nursery ends; returns once it lists every worker."""
    binary = smg_binary()
    port, metrics_port = free_port(), free_port()
    fd, name = tempfile.mkstemp(prefix="smg-", suffix=".log")
    os.close(fd)
    log_path = Path(name)
    args = launch_args(binary, workers, port=port, metrics_port=metrics_port, policy=policy,
                       key_headers=key_headers, extra=extra)
    log = open(log_path, "ab")  # noqa: SIM115 (closed when the nursery ends)

    async def run(task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        try:
            await trio.run_process(args, check=False, stdout=log, stderr=subprocess.STDOUT,
                                   deliver_cancel=_stop, task_status=task_status)
        finally:
            log.close()
            log_path.unlink(missing_ok=True)

    process = await nursery.start(run)
    gateway = Gateway(process, port, metrics_port, list(workers), log_path)
    async with httpx.AsyncClient() as http:
        with trio.move_on_after(60):
            while process.returncode is None:
                try:
                    listed = (await http.get(f"{gateway.url}/workers")).json()
                    ready = [w for w in listed.get("workers", []) if w.get("is_healthy")]
                    if len(ready) == len(workers):
                        return gateway
                except (httpx.TransportError, ValueError):
                    pass
                await trio.sleep(0.1)
    raise RuntimeError(f"SMG did not list its workers; its log ends:\n{gateway.log_tail()}")


async def _stop(process: trio.Process) -> None:
    process.send_signal(signal.SIGKILL)
