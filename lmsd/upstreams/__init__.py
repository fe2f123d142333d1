"""Upstreams: the inference servers behind lmsd: the HTTP client that streams a turn, how
LM Studio is found (``discovery``, the ``lms`` CLI) and the watcher that keeps its models fit."""
