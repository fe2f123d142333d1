"""A client that keeps its history the way Claude Code does, and scripted tool turns: for
the tests that hold a conversation with lmsd."""

from __future__ import annotations

from typing import Any

from tests.emulator import Call, Reasoning, Reply, Text

BASH = {"name": "Bash", "input_schema": {"type": "object",
                                         "properties": {"command": {"type": "string"}}}}
SYSTEM = [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.329.3d0;"},
          {"type": "text", "text": "You are a local coding agent."}]


class Conversation:
    """A client that keeps its history the way Claude Code does."""

    def __init__(self, client, session: str = "sess-1", agent: str | None = None,
                 model: str = "claude-sonnet-4-6", tools: list | None = None) -> None:
        self.client, self.model = client, model
        self.tools = [BASH] if tools is None else tools
        self.headers = {"X-Claude-Code-Session-Id": session}
        if agent:
            self.headers["x-claude-code-agent-id"] = agent
        self.history: list[dict[str, Any]] = []

    def add_user(self, text: str | None = None) -> None:
        last = self.history[-1]["content"] if self.history else []
        uses = [b for b in last if isinstance(b, dict) and b["type"] == "tool_use"]
        if text is None and uses:
            content = [{"type": "tool_result", "tool_use_id": u["id"],
                        "content": f"output of {u['input'].get('command')}"} for u in uses]
        else:
            content = [{"type": "text", "text": text or "go on"}]
        self.history.append({"role": "user", "content": content})

    async def send(self, text: str | None = None) -> Any:
        self.add_user(text)
        return await self.request()

    async def request(self, history: list | None = None) -> Any:
        async with self.client.messages.stream(
                model=self.model, max_tokens=1000, system=SYSTEM, tools=self.tools,
                messages=history or self.history, extra_headers=self.headers) as stream:
            msg = await stream.get_final_message()
        if history is None:
            self.history.append({"role": "assistant", "content": [
                b.model_dump(exclude_none=True) for b in msg.content]})
        return msg


def tool_turns(n: int) -> list[Reply]:
    return [Reply(Reasoning(f"thinking {i}"), Text(f"step {i}"),
                  Call("Bash", {"command": f"echo {i}"})) for i in range(n)]
