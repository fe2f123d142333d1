"""The protocol core: pure Python, no I/O, no trio, no httpx.

The root holds what every part shares (the pivot, planning and chains, fit, tokens, SSE,
failures, the encoder loop and the reply); one folder per API's codec (``anthropic/``,
``responses/``, ``chat/``); ``clients/`` what lmsd knows of its clients' habits (Claude
Code's compaction, resends) and ``servers/`` what it knows of the engines (which one
answered, LM Studio's listings, a refused key, what a turn prefilled).
"""
