"""What lmsd knows of the engines behind it (LM Studio, llama-server, ...), apart from
their APIs: which engine answered (``engines.py``), LM Studio's model listings
(``lmstudio.py``), a refused key (``auth.py``), what a turn prefilled as each engine
reports it (``prefill.py``). Their APIs' codecs live in ``responses/``, ``chat/`` and
``anthropic/``.
"""
