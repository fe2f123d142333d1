"""Keeping each conversation's prefix in the engine's cache (``keep_warm``): the keeper
(its per-request path and its background loop, over one shared state), the slot table it
steers by, what it asks and sends the engine, and the misses it sees."""
