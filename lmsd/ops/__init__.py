"""Ops: the commands a user runs beside the daemon: the admin API's CLI client
(status, sessions, tail), ``lmsd doctor`` and ``lmsd service``."""
