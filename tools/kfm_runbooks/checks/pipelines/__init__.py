"""Pipeline checks: determinism, the promotion gate, releases, sync, watchers."""
