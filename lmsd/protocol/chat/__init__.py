"""The OpenAI Chat Completions codec (any /v1/chat/completions server)."""
