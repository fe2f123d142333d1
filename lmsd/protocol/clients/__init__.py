"""What lmsd knows of its clients' behaviour (Claude Code, Codex), apart from their APIs.

When Claude Code compacts and the environment that makes it compact in time
(``compaction.py``); the resends a client makes of a request the engine just refused
(``resends.py``). Their APIs' codecs live in ``anthropic/``, ``responses/`` and ``chat/``.
"""
