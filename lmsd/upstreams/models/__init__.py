"""Models on demand: what each upstream can serve, loading a model a request names, and
keeping the loaded ones within their budget (groups, idle ttl, pinned)."""
