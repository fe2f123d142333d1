"""lmsd: a daemon between coding agents (Claude Code, Codex CLI, any OpenAI or Anthropic
client) and local inference servers, LM Studio first."""

__version__ = "0.1.0"
