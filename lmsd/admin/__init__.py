"""Admin: the admin HTTP API (health, status, sessions, config, metrics, the live event
stream) that ``lmsd status``, ``lmsd tail`` and monitoring read."""
