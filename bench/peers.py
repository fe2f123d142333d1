"""lmsd against its peers: the same captured Claude Code requests through lmsd, LiteLLM's
proxy (its Anthropic ``/v1/messages`` route, ``lm_studio/`` provider, chat completions
upstream) and claude-code-router (CCR, chat completions upstream), all in front of one
LM Studio emulator, plus the emulator called directly as the floor (``/v1/responses``
for lmsd, ``/v1/chat/completions`` for the chat peers).

For each system: median and p99 time to first token (first content delta) and total time
over N alternating runs of each request (the first request of ``basic_json``, answered by
a Bash tool call, and its tool-loop second request, answered by text), the overhead over
the matching direct call, CPU seconds per 100 requests and peak RSS of the system's
processes, the ratios to lmsd, and a correctness column from the anthropic SDK's stream
accumulator (tool ids, usage, thinking blocks, stop reasons).

Peers live outside the project venv: LiteLLM in ``bench/out/peers-venv``, CCR under
``bench/out/ccr`` (installed on first use unless ``--no-install``). A peer that cannot be
installed or started is reported and skipped.

    python bench/peers.py [--n 100] [--only lmsd,litellm,ccr] [--no-install]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, free_port, summary
from tests.emulator import Call, Emulator, Reasoning, Reply, RequestRecord, Text, serve_emulator
from tests.emulator.state import default_models

MODEL = "qwen/qwen3-coder-30b"
CLAUDE_MODEL = "claude-opus-5-5"  # what Claude Code sends (the captured requests)
API_KEY = "sk-bench-5f0c2a9e71d84b3c9a6e0d1f2b7c4e88"  # accepted by every system
OUT = ROOT / "bench" / "out"
PEERS_VENV = OUT / "peers-venv"
CCR_DIR = OUT / "ccr"
LITELLM_SPEC = "litellm[proxy]==1.106.2"
# 3.x needs Node >= 22 and a native sqlite build; 2.0.0 is one bundled file on Node >= 20
# whose `ccr start` runs the Fastify server in the foreground.
CCR_SPEC = "@musistudio/claude-code-router@2.0.0"
CCR_CLI = CCR_DIR / "node_modules/@musistudio/claude-code-router/dist/cli.js"

THINK_MARK = "[bench:think]"
LENGTH_MARK = "[bench:length]"
SYSTEM_MARK = "[bench:system]"
SYSTEM_SEEN = "The system message arrived."
THINK_TEXT = "The user wants a listing, so Bash it is."
THINK_CALL = Call("Bash", {"command": "ls -la", "description": "List files"},
                  call_id="call_bench_7f3a91")

ANTHROPIC_DELTA = re.compile(rb'"content_block_delta"')
RESPONSES_DELTA = re.compile(rb'\.delta"')
CHAT_DELTA = re.compile(rb'"(?:content|arguments|reasoning_content)":\s*"[^"]')


class Unavailable(Exception):
    """A peer that cannot be installed or run here; the message says why."""


# -- the emulator process ----------------------------------------------------------------


def _item_text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    return " ".join(str(p.get("text", "")) for p in content or [] if isinstance(p, dict))


def current_turn_text(items: list[dict[str, Any]]) -> str:
    """Text of the trailing user/system messages (the turn the model is answering)."""
    texts = []
    for item in reversed(items):
        if item.get("type", "message") != "message" or item.get("role") == "assistant":
            break
        texts.append(_item_text(item))
    return " ".join(texts)


class BenchEmulator(Emulator):
    """The default policy, plus markers for the correctness checks: in the current turn
    (THINK_MARK, LENGTH_MARK), or anywhere in the context or instructions (SYSTEM_MARK,
    which Claude Code's mid-conversation system message carries in the check)."""

    def next_reply(self, record: RequestRecord) -> Reply:
        text = current_turn_text(record.context_items)
        everything = " ".join([record.instructions_used or ""]
                              + [_item_text(i) for i in record.context_items])
        if SYSTEM_MARK in everything:
            reply = Reply(Text(SYSTEM_SEEN))
        elif THINK_MARK in text:
            reply = Reply(Reasoning(THINK_TEXT), Text("Listing the files."), THINK_CALL)
        elif LENGTH_MARK in text:
            reply = Reply(Text("This answer runs out of tokens"), incomplete=True)
        else:
            return super().next_reply(record)
        record.reply = reply
        return reply


def run_emulator(port: int) -> None:
    models = default_models()
    models[0].context_length = 262144
    emu = BenchEmulator(models)

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            url = await serve_emulator(nursery, emu, port=port)
            print(f"bench emulator on {url}", file=sys.stderr, flush=True)

    trio.run(serve)


# -- processes ------------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()  # fields from 3 (state) on


def tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def cpu_seconds(pid: int) -> float:
    """utime+stime of the process tree (plus reaped children's cutime+cstime)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in tree(pid):
        try:
            fields = _stat(p)
        except OSError:
            continue
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return total / tick


def peak_rss_mb(pid: int) -> float:
    """Sum of VmHWM over the process tree, in MiB."""
    kb = 0
    for p in tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
        kb += int(match.group(1)) if match else 0
    return kb / 1024


def log_tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip()[:200] for line in text[-lines:])


@asynccontextmanager
async def service(name: str, args: list[str], ready_url: str, log: Path, *,
                  env: dict[str, str] | None = None, timeout: float = 60.0
                  ) -> AsyncIterator[trio.Process]:
    """Run ``args`` (output to ``log``) until the block ends; wait until ``ready_url``
    answers. Raises Unavailable if it exits or does not answer in time."""
    with log.open("wb") as sink:
        proc = await trio.lowlevel.open_process(
            args, env=env or dict(os.environ), cwd=ROOT, stdin=subprocess.DEVNULL,
            stdout=sink, stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            deadline = trio.current_time() + timeout
            while True:
                if proc.poll() is not None:
                    raise Unavailable(f"{name} exited with status {proc.returncode}: "
                                      f"{log_tail(log)}")
                if trio.current_time() > deadline:
                    raise Unavailable(f"{name} did not answer {ready_url} within {timeout:.0f}s:"
                                      f" {log_tail(log)}")
                try:
                    await client.get(ready_url)
                    break
                except httpx.TransportError:
                    await trio.sleep(0.1)
        yield proc
    finally:
        pids = tree(proc.pid)
        for pid in pids:
            with suppress(OSError):
                os.kill(pid, 15)
        with trio.move_on_after(5) as scope:
            await proc.wait()
        if scope.cancelled_caught:
            for pid in pids:
                with suppress(OSError):
                    os.kill(pid, 9)
            await proc.wait()


# -- installing the peers -----------------------------------------------------------------


def install_litellm(allow: bool) -> Path:
    exe = PEERS_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    if not allow:
        raise Unavailable(f"not installed ({exe} missing; run without --no-install)")
    print(f"installing {LITELLM_SPEC} into {PEERS_VENV} ...", file=sys.stderr, flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True,
                       capture_output=True, timeout=120)
        subprocess.run([str(PEERS_VENV / "bin" / "pip"), "install", "-q", LITELLM_SPEC],
                       check=True, capture_output=True, timeout=1200)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-3:]
        raise Unavailable(f"pip install {LITELLM_SPEC} failed: {' | '.join(tail)}") from None
    except subprocess.TimeoutExpired:
        raise Unavailable(f"pip install {LITELLM_SPEC} timed out") from None
    if not exe.exists():
        raise Unavailable(f"pip installed {LITELLM_SPEC} but there is no {exe}")
    return exe


def install_ccr(allow: bool) -> tuple[str, Path]:
    node = shutil.which("node")
    if node is None:
        raise Unavailable("node is not on PATH")
    if CCR_CLI.exists():
        return node, CCR_CLI
    if not allow:
        raise Unavailable(f"not installed ({CCR_CLI} missing; run without --no-install)")
    npm = shutil.which("npm")
    if npm is None:
        raise Unavailable("npm is not on PATH")
    print(f"installing {CCR_SPEC} into {CCR_DIR} ...", file=sys.stderr, flush=True)
    try:
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(CCR_DIR),
                        CCR_SPEC], check=True, capture_output=True, timeout=600)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-3:]
        raise Unavailable(f"npm install {CCR_SPEC} failed: {' | '.join(tail)}") from None
    except subprocess.TimeoutExpired:
        raise Unavailable(f"npm install {CCR_SPEC} timed out") from None
    if not CCR_CLI.exists():
        raise Unavailable(f"npm installed {CCR_SPEC} but there is no {CCR_CLI}")
    return node, CCR_CLI


# -- starting each system -------------------------------------------------------------------


@asynccontextmanager
async def start_lmsd(emu_url: str, tmp: Path) -> AsyncIterator[tuple[str, trio.Process]]:
    port, admin = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = [sys.executable, "-m", "lmsd", "serve", "--listen", f"127.0.0.1:{port}",
            "--admin-listen", f"127.0.0.1:{admin}", "--upstream", emu_url, "--no-watch",
            "--state-dir", str(tmp / "lmsd-state"), "--model-map", f"{CLAUDE_MODEL}={MODEL}",
            "--log-level", "warning"]
    url = f"http://127.0.0.1:{port}"
    async with service("lmsd", args, f"{url}/", tmp / "lmsd.log", env=env) as proc:
        yield url, proc


LITELLM_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"default": {"class": "logging.StreamHandler"}},
    "loggers": {
        "uvicorn": {"handlers": ["default"], "level": "WARNING"},
        "uvicorn.error": {"level": "WARNING"},
        "uvicorn.access": {"handlers": ["default"], "level": "WARNING", "propagate": False},
    },
}


@asynccontextmanager
async def start_litellm(emu_url: str, tmp: Path, allow_install: bool,
                        provider: str = "lm_studio"
                        ) -> AsyncIterator[tuple[str, trio.Process]]:
    """LiteLLM's proxy. ``lm_studio/`` is its provider for LM Studio (chat completions);
    ``openai/`` sends /v1/messages through the Responses API instead."""
    exe = await trio.to_thread.run_sync(install_litellm, allow_install)
    port = free_port()
    config = tmp / f"litellm-{provider}.yaml"
    config.write_text(json.dumps({
        "model_list": [{
            "model_name": CLAUDE_MODEL,
            "litellm_params": {"model": f"{provider}/{MODEL}", "api_base": f"{emu_url}/v1",
                               "api_key": "lm-studio"},
        }],
        "litellm_settings": {"drop_params": True},
        "general_settings": {"master_key": API_KEY},
    }))  # JSON is YAML
    (tmp / "litellm-logging.json").write_text(json.dumps(LITELLM_LOGGING))
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR",
               LITELLM_TELEMETRY="False", HOME=str(tmp / "litellm-home"))
    env.pop("PYTHONPATH", None)
    args = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", "1", "--log_config", str(tmp / "litellm-logging.json")]
    url = f"http://127.0.0.1:{port}"
    async with service("litellm", args, f"{url}/health/liveliness",
                       tmp / f"litellm-{provider}.log",
                       env=env, timeout=120) as proc:
        yield url, proc


@asynccontextmanager
async def start_ccr(emu_url: str, tmp: Path, allow_install: bool,
                    transformers: list[str] | None = None
                    ) -> AsyncIterator[tuple[str, trio.Process]]:
    node, cli = await trio.to_thread.run_sync(install_ccr, allow_install)
    port = free_port()
    home = tmp / ("ccr-home-" + "-".join(transformers or ["plain"]))
    (home / ".claude-code-router").mkdir(parents=True)
    provider: dict[str, Any] = {"name": "lmstudio",
                                "api_base_url": f"{emu_url}/v1/chat/completions",
                                "api_key": "lm-studio", "models": [MODEL]}
    if transformers:
        provider["transformer"] = {"use": transformers}
    (home / ".claude-code-router" / "config.json").write_text(json.dumps({
        "LOG": False, "HOST": "127.0.0.1", "PORT": port, "APIKEY": API_KEY,
        "NON_INTERACTIVE_MODE": True, "Providers": [provider],
        "Router": {"default": f"lmstudio,{MODEL}"},
    }, indent=2))
    env = dict(os.environ, HOME=str(home))
    url = f"http://127.0.0.1:{port}"
    async with service("ccr", [node, str(cli), "start"], f"{url}/", home / "ccr.log",
                       env=env) as proc:
        yield url, proc


# -- request bodies ----------------------------------------------------------------------------


def captured() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The first two /v1/messages requests of basic_json, and Claude Code's beta header."""
    run = json.loads((ROOT / "tests/fixtures/basic_json.json").read_text())
    reqs = [r for r in run["requests"] if r["path"] == "/v1/messages"][:2]
    headers = {k.lower(): v for k, v in reqs[0]["headers"]}
    return [r["body"] for r in reqs], {"anthropic-beta": headers.get("anthropic-beta", "")}


def responses_body(body: dict[str, Any]) -> dict[str, Any]:
    """What lmsd sends upstream for ``body`` (its own translation)."""
    from lmsd.protocol.anthropic.items import conversation
    from lmsd.protocol.anthropic.request import validate_messages_request
    from lmsd.protocol.plan import plan_turn

    req = validate_messages_request(body)
    return plan_turn(conversation(req), model=MODEL, nodes=()).full


def chat_body(responses: dict[str, Any]) -> dict[str, Any]:
    """The same conversation as a chat completions request (the chat peers' floor)."""
    messages: list[dict[str, Any]] = []
    if responses.get("instructions"):
        messages.append({"role": "system", "content": responses["instructions"]})
    for item in responses["input"]:
        kind = item.get("type", "message")
        if kind == "message":
            content = item["content"]
            text = content if isinstance(content, str) else "".join(
                p.get("text", "") for p in content)
            messages.append({"role": item["role"], "content": text})
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item["output"]
            if not isinstance(output, str):
                output = "".join(p.get("text", "") for p in output)
            messages.append({"role": "tool", "tool_call_id": item["call_id"],
                             "content": output})
    tools = [{"type": "function", "function": {k: v for k, v in t.items() if k != "type"}}
             for t in responses.get("tools") or []]
    return {"model": MODEL, "messages": messages, "tools": tools, "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": responses.get("max_output_tokens")}


def with_marker(body: dict[str, Any], mark: str, role: str = "user") -> dict[str, Any]:
    """A copy of ``body`` whose last ``role`` message ends with a text block ``mark``.

    Claude Code's first request ends with a ``system`` role message (after the user's
    message), so the markers for the current turn go into the last user message.
    """
    body = json.loads(json.dumps(body))
    last = [m for m in body["messages"] if m["role"] == role][-1]
    if isinstance(last["content"], str):
        last["content"] = [{"type": "text", "text": last["content"]}]
    last["content"].append({"type": "text", "text": mark})
    return body


# -- timing --------------------------------------------------------------------------------------


@dataclass
class System:
    name: str
    url: str  # full endpoint URL
    bodies: list[bytes]  # request 1, request 2
    headers: dict[str, str]
    first: re.Pattern[bytes]
    floor: str | None = None  # the direct system this one is compared with
    base_url: str | None = None  # Anthropic base URL (peers only)
    proc: trio.Process | None = None
    samples: list[list[tuple[float, float]]] = field(default_factory=lambda: [[], []])
    errors: list[str] = field(default_factory=list)
    cpu: float | None = None  # CPU seconds over the timed phase
    rss: float | None = None
    checks: dict[str, str] = field(default_factory=dict)


async def timed(client: httpx.AsyncClient, system: System, which: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    ttft = None
    async with client.stream("POST", system.url, content=system.bodies[which],
                             headers=system.headers) as response:
        if response.status_code != 200:
            body = (await response.aread())[:300].decode(errors="replace")
            raise RuntimeError(f"HTTP {response.status_code}: {body}")
        async for chunk in response.aiter_raw():
            if ttft is None and system.first.search(chunk):
                ttft = time.perf_counter() - t0
    total = time.perf_counter() - t0
    if ttft is None:
        raise RuntimeError("no content delta in the stream")
    return ttft, total


async def run_rounds(client: httpx.AsyncClient, systems: list[System], rounds: int,
                     record: bool) -> None:
    for i in range(rounds):
        k = i % len(systems)
        for system in systems[k:] + systems[:k]:
            if len(system.errors) >= 5:
                continue
            for which in (0, 1):
                try:
                    sample = await timed(client, system, which)
                except (httpx.HTTPError, RuntimeError) as exc:
                    system.errors.append(f"request {which + 1}: {exc}")
                    continue
                if record:
                    system.samples[which].append(sample)


# -- correctness ---------------------------------------------------------------------------------


def sdk_final(base_url: str, body: dict[str, Any], beta: str) -> Any:
    import anthropic

    client = anthropic.Anthropic(base_url=base_url, api_key=API_KEY, max_retries=0,
                                 timeout=30)
    known = ("model", "messages", "system", "tools", "metadata", "max_tokens", "thinking")
    kwargs = {k: body[k] for k in known if k in body}
    extra = {k: v for k, v in body.items() if k not in known and k != "stream"}
    try:
        with client.messages.stream(**kwargs, extra_body=extra,
                                    extra_headers={"anthropic-beta": beta}) as stream:
            seen = {event.type for event in stream}
            final = stream.get_final_message()
    finally:
        client.close()
    if "message_stop" not in seen:
        raise RuntimeError(f"stream ended without message_stop (events: {sorted(seen)})")
    return final


def short_error(exc: Exception) -> str:
    """The innermost error message of an exception (peers nest upstream errors)."""
    text = str(exc)
    inner = re.findall(r'\\?"message\\?":\s*\\?"(.+?)\\?"', text)
    status = getattr(exc, "status_code", None)
    prefix = f"HTTP {status}: " if status else f"{type(exc).__name__}: "
    return prefix + (inner[-1] if inner else text).replace("\\'", "'")[:200]


def check(base_url: str, bodies: list[dict[str, Any]], beta: str) -> dict[str, str]:
    """Run the three SDK checks; each column is 'ok' or what went wrong."""
    cases = {"think": with_marker(bodies[0], THINK_MARK), "loop": bodies[1],
             "length": with_marker(bodies[0], LENGTH_MARK),
             "system": with_marker(bodies[0], SYSTEM_MARK, "system")}
    finals: dict[str, Any] = {}
    failures: dict[str, list[str]] = {}
    for name, body in cases.items():
        try:
            finals[name] = sdk_final(base_url, body, beta)
        except Exception as exc:
            failures.setdefault(short_error(exc), []).append(name)
    out = {"sdk": "ok" if not failures else "FAIL " + "; ".join(
        f"{'+'.join(names)}: {why}" for why, names in failures.items())}
    think = finals.get("think")
    if think is None:
        out["ids"] = out["thinking"] = "n/a"
    else:
        uses = [b for b in think.content if b.type == "tool_use"]
        got = [(b.id, b.input) for b in uses]
        out["ids"] = ("ok" if got == [(THINK_CALL.call_id, THINK_CALL.arguments)]
                      else f"FAIL {got!r:.120}")
        thoughts = [b.thinking for b in think.content if b.type == "thinking"]
        out["thinking"] = ("ok" if thoughts and thoughts[0] == THINK_TEXT
                           else f"FAIL blocks={[b.type for b in think.content]}"
                           f" thinking={thoughts!r:.60}")
    usage = {name: f.usage.input_tokens for name, f in finals.items()}
    out["usage"] = ("n/a" if not usage else "ok" if all(v and v > 0 for v in usage.values())
                    else f"FAIL input_tokens={usage}")
    system = finals.get("system")
    if system is None:
        out["system msg"] = "n/a"
    else:
        said = "".join(b.text for b in system.content if b.type == "text")
        out["system msg"] = "ok" if said == SYSTEM_SEEN else "FAIL dropped (model never saw it)"
    want = {"think": "tool_use", "loop": "end_turn", "length": "max_tokens"}
    stops = {name: f.stop_reason for name, f in finals.items() if name in want}
    wrong = {n: s for n, s in stops.items() if s != want[n]}
    out["stops"] = "n/a" if not stops else "ok" if not wrong else f"FAIL {wrong}"
    return out


# -- main -------------------------------------------------------------------------------------


def fmt_ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}x"


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def versions() -> str:
    """The peers' versions, as installed."""
    found = []
    infos = sorted(PEERS_VENV.glob("lib/python*/site-packages/litellm-*.dist-info"))
    if infos:
        found.append("LiteLLM " + infos[-1].name.removeprefix("litellm-").removesuffix(
            ".dist-info"))
    package = CCR_CLI.parent.parent / "package.json"
    if package.exists():
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout
        found.append(f"claude-code-router {json.loads(package.read_text())['version']} "
                     f"(node {node.strip()})")
    return ", ".join(found) or "none installed"


def report(systems: list[System], failed: dict[str, str], n: int,
           emu_cpu: float, extra_checks: dict[str, dict[str, str]]) -> None:
    by_name = {s.name: s for s in systems}
    requests = ("req 1 (Bash call)", "req 2 (tool loop)")
    print(f"\npeers: {versions()}; load average at the end: "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"{n} alternating runs of each request per system; times in ms; overhead = "
          "median minus the matching direct call's median\n")
    print("| system | request | TTFT p50 | TTFT p99 | total p50 | total p99 "
          "| +TTFT p50 | +total p50 |")
    print("|---|---|---|---|---|---|---|---|")
    medians: dict[tuple[str, int], tuple[float, float]] = {}
    for system in systems:
        for which, label in enumerate(requests):
            runs = system.samples[which]
            if not runs:
                print(f"| {system.name} | {label} | - | - | - | - | - | - |")
                continue
            t50, t99 = summary([r[0] for r in runs])
            o50, o99 = summary([r[1] for r in runs])
            medians[system.name, which] = (t50, o50)
            over = "| | |"
            floor = medians.get((system.floor, which)) if system.floor else None
            if floor:
                over = f"| +{t50 - floor[0]:.2f} | +{o50 - floor[1]:.2f} |"
            print(f"| {system.name} | {label} | {t50:.2f} | {t99:.2f} | {o50:.2f} | "
                  f"{o99:.2f} {over}")

    def overhead(system: System | None, part: int) -> float | None:
        """Mean over both requests of (median - floor median); part 0 TTFT, 1 total."""
        if system is None:
            return None
        diffs = []
        for which in (0, 1):
            mine, floor = medians.get((system.name, which)), medians.get(
                (system.floor or "", which))
            if mine is None or floor is None:
                return None
            diffs.append(mine[part] - floor[part])
        return sum(diffs) / len(diffs)

    lmsd = by_name.get("lmsd")
    base = (overhead(lmsd, 0), overhead(lmsd, 1), lmsd and lmsd.cpu, lmsd and lmsd.rss)
    print("\nper system: overhead (mean of both requests), CPU seconds per 100 requests "
          "and peak RSS (VmHWM) of its processes, each also as a ratio to lmsd; then the "
          "anthropic SDK checks\n")
    print("| system | +TTFT ms | x lmsd | +total ms | x lmsd | CPU s/100 req | x lmsd "
          "| peak RSS MiB | x lmsd | SDK stream | tool ids | usage | thinking "
          "| stop reasons | system msg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for system in systems:
        if system.floor is None:
            continue
        mine = (overhead(system, 0), overhead(system, 1), system.cpu, system.rss)
        cells = []
        for value, ref, spec in zip(mine, base, (".2f", ".2f", ".2f", ".0f"), strict=True):
            cells += [fmt(value, spec), fmt_ratio(value, ref)]
        cells += [system.checks.get(k, "-").split(" ")[0] for k in
                  ("sdk", "ids", "usage", "thinking", "stops", "system msg")]
        print(f"| {system.name} | " + " | ".join(cells) + " |")
    print(f"\nemulator (shared upstream): {emu_cpu:.2f} CPU s per 100 requests it served")
    for system in systems:
        for key, value in system.checks.items():
            if value not in ("ok", "n/a"):
                print(f"  {system.name} {key}: {value}")
        if system.errors:
            print(f"  {system.name}: {len(system.errors)} failed requests, first: "
                  f"{system.errors[0][:300]}")
    for name, checks in extra_checks.items():
        print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in checks.items()))
    for name, why in failed.items():
        print(f"  {name}: NOT RUN - {why}")


async def main(args: argparse.Namespace) -> None:
    wanted = set(args.only.split(","))
    bodies, beta = captured()
    for body in bodies:
        body["stream"] = True
    raw = [json.dumps(b).encode() for b in bodies]
    resp = [responses_body(b) for b in bodies]
    chat = [chat_body(r) for r in resp]
    anthropic_headers = {"content-type": "application/json", "anthropic-version": "2023-06-01",
                         **beta, "x-api-key": API_KEY}
    json_headers = {"content-type": "application/json", "authorization": "Bearer lm-studio"}
    failed: dict[str, str] = {}
    extra_checks: dict[str, dict[str, str]] = {}
    emu_port = free_port()
    emu_url = f"http://127.0.0.1:{emu_port}"
    with tempfile.TemporaryDirectory(prefix="lmsd-peers-") as tmpdir:
        tmp = Path(tmpdir)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        async with AsyncExitStack() as stack:
            emu_proc = await stack.enter_async_context(service(
                "emulator", [sys.executable, str(Path(__file__).resolve()), "--emulator-port",
                             str(emu_port)], f"{emu_url}/v1/models", tmp / "emulator.log",
                env=env))
            systems = [
                System("direct /v1/responses", f"{emu_url}/v1/responses",
                       [json.dumps(r).encode() for r in resp], json_headers, RESPONSES_DELTA),
                System("direct /v1/chat/completions", f"{emu_url}/v1/chat/completions",
                       [json.dumps(c).encode() for c in chat], json_headers, CHAT_DELTA),
            ]
            starters: dict[str, Callable[[], Any]] = {
                "lmsd": lambda: start_lmsd(emu_url, tmp),
                "litellm": lambda: start_litellm(emu_url, tmp, not args.no_install),
                "ccr": lambda: start_ccr(emu_url, tmp, not args.no_install),
            }
            floors = {"lmsd": "direct /v1/responses"}
            for name, starter in starters.items():
                if name not in wanted:
                    continue
                print(f"starting {name} ...", file=sys.stderr, flush=True)
                try:
                    url, proc = await stack.enter_async_context(starter())
                except Unavailable as exc:
                    failed[name] = str(exc)
                    print(f"  {name} unavailable: {exc}", file=sys.stderr, flush=True)
                    continue
                systems.append(System(name, f"{url}/v1/messages", raw, anthropic_headers,
                                      ANTHROPIC_DELTA,
                                      floor=floors.get(name, "direct /v1/chat/completions"),
                                      base_url=url, proc=proc))
            async with httpx.AsyncClient(timeout=httpx.Timeout(60.0)) as client:
                await run_rounds(client, systems, args.warmup, record=False)
                for system in systems:
                    if system.errors:
                        print(f"  {system.name} fails in warm-up: {system.errors[0][:300]}",
                              file=sys.stderr, flush=True)
                print(f"timing {args.n} alternating rounds ...", file=sys.stderr, flush=True)
                start_cpu = {s.name: cpu_seconds(s.proc.pid) for s in systems if s.proc}
                emu_start = cpu_seconds(emu_proc.pid)
                await run_rounds(client, systems, args.n, record=True)
                served = sum(len(s.samples[0]) + len(s.samples[1]) for s in systems)
                emu_cpu = (cpu_seconds(emu_proc.pid) - emu_start) / max(served, 1) * 100
                for system in systems:
                    if system.proc:
                        done = len(system.samples[0]) + len(system.samples[1])
                        used = cpu_seconds(system.proc.pid) - start_cpu[system.name]
                        system.cpu = used / max(done, 1) * 100
                        system.rss = peak_rss_mb(system.proc.pid)
            print("correctness checks (anthropic SDK) ...", file=sys.stderr, flush=True)
            for system in systems:
                if system.base_url:
                    system.checks = await trio.to_thread.run_sync(
                        check, system.base_url, bodies, beta["anthropic-beta"])
            # Other configurations, correctness only: LiteLLM's generic OpenAI provider, and
            # CCR with its documented transformers for reasoning_content and stream usage.
            variants: list[tuple[str, Callable[[], Any]]] = []
            if "litellm" in wanted and "litellm" not in failed:
                variants.append(("litellm openai/ (Responses API upstream)",
                                 lambda: start_litellm(emu_url, tmp, False, "openai")))
            if "ccr" in wanted and "ccr" not in failed:
                for use in (["reasoning"], ["streamoptions"], ["reasoning", "streamoptions"]):
                    variants.append((f"ccr + transformer {'+'.join(use)}",
                                     lambda use=use: start_ccr(emu_url, tmp, False, use)))
            for label, starter in variants if not args.no_variants else []:
                print(f"checking {label} ...", file=sys.stderr, flush=True)
                try:
                    async with starter() as (url, _):
                        extra_checks[label] = await trio.to_thread.run_sync(
                            check, url, bodies, beta["anthropic-beta"])
                except Unavailable as exc:
                    extra_checks[label] = {"start": f"FAIL {exc}"}
    report(systems, failed, args.n, emu_cpu, extra_checks)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="timed rounds (each request)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--only", default="lmsd,litellm,ccr", help="peers to run")
    parser.add_argument("--no-install", action="store_true", help="do not install peers")
    parser.add_argument("--no-variants", action="store_true",
                        help="skip the correctness checks of other peer configurations")
    parser.add_argument("--emulator-port", type=int, help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.emulator_port:
        run_emulator(parsed.emulator_port)
    else:
        trio.run(main, parsed)
