"""Ops: the commands a user runs beside the daemon: the admin API's CLI client
(:mod:`.client`; status, sessions, tail, env), ``lmsd doctor`` and ``lmsd service``."""
