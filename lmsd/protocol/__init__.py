"""The protocol core: pure Python, no I/O, no trio, no httpx.

Anthropic request in, Responses request out; Responses events in, Anthropic events out.
"""
