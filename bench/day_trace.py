"""The day trace of bench/day.py: Claude Code's captured requests, in Anthropic form, as
Claude Code would send them to lmsd over one working day (the requests only; day.py
sends them), plus what a perfect cache would prefill and what llama-server's log says it
did prefill.

Built as the research notes' ``cache-baseline.md`` describes
(tests/fixtures/inter_nodisable.json: #2 the title, #3 the main session's first turn, #4
its turn after a tool call):
- main turn N is #4, its tools cut to ``tools`` of them (``TOOL_ORDER``; Bash first, as
  every later turn calls it); turn N+k adds k Bash ``tool_use`` blocks and their 40-line
  results (~1k tokens each);
- the title is #2 under a haiku-class name, sent beside turn N;
- the subagent is synthesized (no capture has one): an Explore-style system prompt, 7 of
  the captured tools, a task of its own; same session, its own ``X-Claude-Code-Agent-Id``
  (how lmsd tells agents apart);
- session 2 is #3 with a different first user message and its own session id (header and
  ``metadata.user_id``, both as Claude Code sends them): it shares the system prompt,
  tools and first reminder with session 1.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import ROOT
from lmsd.protocol.anthropic.items import conversation
from lmsd.protocol.anthropic.request import validate_messages_request
from lmsd.protocol.chat.request import build_chat_request
from lmsd.protocol.warmup import common_prefix
from tests.engine.server import MODEL_ALIAS

CAPTURE = ROOT / "tests/fixtures/inter_nodisable.json"
MAIN_MODEL = "claude-opus-5-5"  # the captured main model
SIDE_MODEL = "claude-haiku-4-5"  # title and Explore subagent: haiku-class (background)
SESSION_1 = "6bb8d31a-7a42-4b0e-8f24-db56b41207e3"  # the captured session
SESSION_2 = "0e5f2c71-3b9d-4a8e-9c16-d2f4a7b81e05"
SUBAGENT_ID = "a7f3c2d1-explore-0001"
#: Which captured tools a cut keeps, most needed first: ``--tools N`` keeps the first N.
TOOL_ORDER = ("Bash", "Read", "Edit", "Write", "Skill", "ToolSearch", "ListAgents", "Agent",
              "ReportFindings", "ScheduleWakeup", "AskUserQuestion", "Workflow",
              "DeferredToolPlaceholder")
SUBAGENT_TOOLS = ("Bash", "Read", "Skill", "ToolSearch", "ListAgents", "ReportFindings", "Edit")
MAX_TOKENS = 16  # the answers do not matter: every later turn is built, not generated
DROP_HEADERS = {"host", "content-length", "connection", "accept-encoding"}
EXPLORE_PROMPT = """You are a file search specialist for Claude Code, Anthropic's official \
CLI for Claude. You excel at thoroughly navigating and exploring codebases.

=== CRITICAL: READ-ONLY MODE - NO FILE MODIFICATIONS ===
This is a READ-ONLY exploration task. You are STRICTLY PROHIBITED from creating new files, \
modifying existing files, deleting files, moving or copying files, creating temporary files \
anywhere (including /tmp), using redirect operators (>, >>, |) or heredocs to write to \
files, or running any commands that change the system state.

Your role is EXCLUSIVELY to search and analyze existing code. Your strengths:
- Rapidly finding files using glob patterns
- Searching code and text with powerful regex patterns
- Reading and analyzing file contents

Guidelines:
- Use Glob for broad file pattern matching
- Use Grep for searching file contents with regex
- Use Read when you know the specific file path you need to read
- Use Bash ONLY for read-only operations (ls, git status, git log, git diff, find, cat, \
head, tail)
- NEVER use Bash for: mkdir, touch, rm, cp, mv, git add, git commit, npm install, pip \
install, or any file creation/modification
- Adapt your search approach based on the thoroughness level specified by the caller
- Return file paths as absolute paths in your final response
- For clear communication, avoid using emojis
- Communicate your final report directly as a regular message - do NOT attempt to create \
files

NOTE: You are meant to be a fast agent that returns output as quickly as possible. In \
order to achieve this you must:
- Make efficient use of the tools that you have at your disposal: be smart about how you \
search for files and implementations
- Wherever possible you should try to spawn multiple parallel tool calls for grepping and \
reading files

Complete the user's search request efficiently and report your findings clearly.

Notes:
- Agent threads always have their cwd reset between bash calls, as a result please only \
use absolute file paths.
- In your final response, share file paths (always absolute, never relative) that are \
relevant to the task. Include code snippets only when the exact text is load-bearing.

Here is useful information about the environment you are running in:
<env>
Working directory: /home/dev/project
Is directory a git repo: Yes
Platform: linux
OS Version: Linux 6.18.44
Today's date: 2026-11-21
</env>"""


@dataclass
class Req:
    """One request of the trace: its name, Anthropic body and Claude Code's headers."""

    name: str
    body: dict[str, Any]
    headers: dict[str, str]
    tokens: list[int] = field(default_factory=list)  # the rendered prompt, engine's ids
    new: int = 0  # tokens no earlier request of the trace started with

    def chat(self) -> dict[str, Any]:
        """What lmsd sends upstream (``--upstream-api chat``, llama-server)."""
        return build_chat_request(conversation(validate_messages_request(
            copy.deepcopy(self.body))), model=MODEL_ALIAS, named_as_required=True)


@dataclass
class Trace:
    title: Req
    main: list[Req]  # N, N+1, ...
    subagent: Req
    session2: Req

    def in_order(self) -> list[Req]:
        """The order the engine sees them (the title 80 ms before turn N)."""
        m = self.main
        return [self.title, m[0], m[1], self.subagent, m[2], self.session2, m[3], *m[4:]]


def _captured() -> list[dict[str, Any]]:
    return json.loads(CAPTURE.read_text())["requests"]


def _headers(captured: dict[str, Any], session: str, agent: str | None = None
             ) -> dict[str, str]:
    headers = {k: v for k, v in captured["headers"] if k.lower() not in DROP_HEADERS}
    headers["X-Claude-Code-Session-Id"] = session
    if agent is not None:
        headers["X-Claude-Code-Agent-Id"] = agent
    return headers


def _in_session(body: dict[str, Any], session: str, model: str) -> dict[str, Any]:
    body = copy.deepcopy(body)
    user = json.loads(body["metadata"]["user_id"])
    user["session_id"] = session
    body["metadata"]["user_id"] = json.dumps(user, separators=(",", ":"))
    body["model"], body["max_tokens"] = model, MAX_TOKENS
    return body


def _cut_tools(body: dict[str, Any], tools: int) -> dict[str, Any]:
    keep = set(TOOL_ORDER[:tools])
    return dict(body, tools=[t for t in body["tools"] if t["name"] in keep])


def tool_output(turn: int, lines: int = 40) -> str:
    return "\n".join(f"-rw-r--r-- 1 dev dev {1000 + 37 * i:5d} Nov 21 10:{i:02d} "
                     f"m{turn}{i:02d}.py" for i in range(lines))


def _grow(body: dict[str, Any], turns: int) -> dict[str, Any]:
    """``body`` plus ``turns`` Bash calls and their results; Claude Code's cache_control
    moves to the newest result."""
    body = copy.deepcopy(body)
    messages = body["messages"]
    for k in range(turns):
        for message in messages:
            if isinstance(message["content"], list):
                for block in message["content"]:
                    block.pop("cache_control", None)
        use_id = f"toolu_day{k:02d}{'0' * 14}{k:02d}"
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": f"Listing module {k}."},
            {"type": "tool_use", "id": use_id, "name": "Bash",
             "input": {"command": f"ls -la src/module_{k}", "description": "List files"}}]})
        messages.append({"role": "user", "content": [
            {"tool_use_id": use_id, "type": "tool_result", "content": tool_output(k),
             "is_error": False, "cache_control": {"type": "ephemeral"}}]})
    return body


def build_trace(tools: int, main_turns: int = 6) -> Trace:
    captured = _captured()
    title_c, first_c, after_c = captured[1], captured[2], captured[3]
    main_body = _cut_tools(_in_session(after_c["body"], SESSION_1, MAIN_MODEL), tools)
    main = [Req(f"N+{k}" if k else "N", _grow(main_body, k), _headers(after_c, SESSION_1))
            for k in range(main_turns)]
    title = Req("title", _in_session(title_c["body"], SESSION_1, SIDE_MODEL),
                _headers(title_c, SESSION_1))
    by_name = {t["name"]: t for t in after_c["body"]["tools"]}
    system = [*copy.deepcopy(main_body["system"][:2]), {"type": "text",
                                                        "text": EXPLORE_PROMPT}]
    sub_body = {"model": SIDE_MODEL, "system": system,
                "tools": [by_name[name] for name in SUBAGENT_TOOLS],
                "messages": [{"role": "user", "content": [{"type": "text", "text": (
                    "Find where lmsd derives a request's session key and its agent id, and "
                    "list every caller. Thoroughness: medium.")}]}],
                "metadata": main_body["metadata"], "max_tokens": MAX_TOKENS, "stream": True}
    subagent = Req("subagent", sub_body, _headers(after_c, SESSION_1, SUBAGENT_ID))
    s2_body = _cut_tools(_in_session(first_c["body"], SESSION_2, MAIN_MODEL), tools)
    s2_body["messages"][0]["content"][-1]["text"] = (
        "list the python files under src/ and count their lines")
    session2 = Req("session 2", s2_body, _headers(first_c, SESSION_2))
    return Trace(title, main, subagent, session2)


def count_new(trace: Trace) -> None:
    """Each request's ``new``: its tokens minus the longest prefix it shares with any
    earlier request of the trace (what a perfect, persistent prefix cache would prefill;
    the engine's own answers are not counted as seen: the next turn replaces them)."""
    seen: list[list[int]] = []
    for req in trace.in_order():
        shared = max((common_prefix(req.tokens, s) for s in seen), default=0)
        req.new = len(req.tokens) - shared
        seen.append(req.tokens)


PROMPT_EVAL = re.compile(r"prompt eval time = +([\d.]+) ms / +(\d+) tokens")


class EngineLog:
    """llama-server's log from an offset on: what it prefilled since (``prompt eval
    time`` lines, one per finished task; slot restores print none and prefill nothing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = self.size()

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def take(self) -> tuple[int, float, int]:
        """(tokens prefilled, prompt ms, tasks) since the last take."""
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            raw = log.read()
        raw = raw[:raw.rfind(b"\n") + 1]  # whole lines only; the rest comes next time
        self.offset += len(raw)
        found = PROMPT_EVAL.findall(raw.decode(errors="replace"))
        return (sum(int(n) for _, n in found), sum(float(ms) for ms, _ in found), len(found))
