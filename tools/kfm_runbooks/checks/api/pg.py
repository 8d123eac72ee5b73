"""The target's PostgreSQL, as the api checks reach it (through `Service`, psycopg lazily)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .. import Finding
from ..common.service import Service


@contextmanager
def connect(svc: Service) -> Iterator[Any]:
    """An autocommit connection to the target's PostgreSQL (CONCURRENTLY needs autocommit)."""
    with svc.connect_pg(autocommit=True, connect_timeout=5) as conn:
        yield conn


def reach(svc: Service) -> Finding | None:
    """None when the database answers, else DB_UNREACHABLE (hold) saying why."""
    try:
        with connect(svc) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # psycopg.Error, TargetError (no DSN named), OSError
        why = str(exc).splitlines()[0][:200] if type(exc).__name__ == "TargetError" else ""
        return Finding(
            "DB_UNREACHABLE",
            "postgres",
            severity="hold",
            message=(
                f"the database did not answer ({why or type(exc).__name__}): "
                "nothing can be verified"
            ),
        )
    return None
