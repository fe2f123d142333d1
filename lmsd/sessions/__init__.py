"""Sessions: what lmsd remembers between turns: the per-session config and the store of
response chains (SQLite, or memory when the state directory is unusable)."""
