"""What the llama-server end-to-end tests (tests/e2e/test_llama_server*.py) share: a tool
its grammar can force, Claude Code's system prompt, SDK clients with engine timeouts, and
llama-server's own token count."""

from __future__ import annotations

import secrets

import anthropic
import httpx
import openai

BASH = {"name": "Bash", "description": "Run a command", "input_schema": {
    "type": "object", "properties": {"command": {"type": "string", "enum": ["ls", "pwd"]}},
    "required": ["command"], "additionalProperties": False}}
CHAT_BASH = {"type": "function", "function": {
    "name": "Bash", "description": BASH["description"], "parameters": BASH["input_schema"]}}


def user(text):
    return [{"role": "user", "content": text}]


def system(note: str = "You are a local coding agent.") -> list[dict]:
    """Claude Code's system prompt: a billing header that changes on every request, then
    the stable instructions."""
    return [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.329.3d0; "
             f"cc_entrypoint=cli; cch={secrets.token_hex(3)};"}, {"type": "text", "text": note}]


def anthropic_client(server):
    return anthropic.AsyncAnthropic(base_url=server.url, api_key="x", max_retries=0,
                                    timeout=300)


def openai_client(server):
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0,
                              timeout=300)


async def engine_prompt_tokens(engine_url: str, chat_body: dict) -> int:
    """How many tokens llama-server's own template and tokenizer make of a chat body."""
    async with httpx.AsyncClient(base_url=engine_url, timeout=60) as http:
        prompt = (await http.post("/apply-template", json=chat_body)).json()["prompt"]
        tokens = (await http.post("/tokenize", json={"content": prompt,
                                                     "parse_special": True})).json()
    return len(tokens["tokens"])
