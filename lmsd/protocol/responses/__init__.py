"""The OpenAI Responses codec (LM Studio's /v1/responses, with chaining)."""
