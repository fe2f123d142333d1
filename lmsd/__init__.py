"""lmsd: an Anthropic Messages API daemon in front of LM Studio."""

__version__ = "0.1.0"
