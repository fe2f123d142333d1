"""The Anthropic Messages codec: the request a client sends, the stream it gets back."""
