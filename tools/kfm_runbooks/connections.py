"""The journal of every connection a run opens to the system it judges.

Checks that talk to a service (HTTP, PostgreSQL, a TLS handshake, a command that reaches
out) note each connection here; the recorder drains the journal after every cell and
writes what it holds into the ledger (kind `connections`), so the evidence says which
hosts a run touched, when, and what they answered. Standard library only: imported in
kernels, and by record.py without importing any check.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

MAX_PENDING = 10_000  # beyond this, connections are counted, not listed (a probe storm)

_lock = threading.Lock()
_pending: list[dict[str, Any]] = []
_dropped = 0


def note(kind: str, where: str, **detail: Any) -> None:
    """Record one connection: `kind` (http, postgres, tls, command), `where` (a URL without
    credentials or a host:port), and what came of it (status, seconds, error)."""
    global _dropped
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "kind": kind,
        "where": where,
        **{k: v for k, v in detail.items() if v is not None},
    }
    with _lock:
        if len(_pending) < MAX_PENDING:
            _pending.append(entry)
        else:
            _dropped += 1


def drain() -> tuple[list[dict[str, Any]], int]:
    """The connections noted since the last drain, and how many were only counted."""
    global _dropped
    with _lock:
        taken, dropped = list(_pending), _dropped
        _pending.clear()
        _dropped = 0
    return taken, dropped
