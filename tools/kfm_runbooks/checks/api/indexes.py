"""The indexes a target expects (`api.expected_indexes`): their state and their repair.

The only change the slow-queries runbook makes: building a missing (or INVALID) expected
index with CREATE INDEX CONCURRENTLY IF NOT EXISTS (idempotent, no table lock); its undo
drops it CONCURRENTLY. Names are plain identifiers, methods from a fixed list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ...target import Target
from .. import Finding, undoable
from ..common.service import Service
from .pg import connect

INDEX_METHODS = frozenset({"gist", "btree", "brin", "gin", "spgist", "hash"})
_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class IndexSpec:
    name: str
    table: str
    column: str
    method: str

    @property
    def create_sql(self) -> str:
        return (
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {self.name} ON {self.table} "
            f"USING {self.method} ({self.column})"
        )

    @property
    def drop_sql(self) -> str:
        return f"DROP INDEX CONCURRENTLY IF EXISTS {self.name}"


def _spec(entry: Any) -> IndexSpec | None:
    if not isinstance(entry, dict):
        return None
    values = [str(entry.get(k, "")) for k in ("name", "table", "column")]
    method = str(entry.get("method", "btree"))
    if not all(_IDENT.fullmatch(v) for v in values) or method not in INDEX_METHODS:
        return None
    return IndexSpec(values[0], values[1], values[2], method)


# -- database access (psycopg, lazily) --------------------------------------------------------


def index_states(svc: Service, specs: list[IndexSpec]) -> dict[IndexSpec, str]:
    with connect(svc) as conn:
        return {spec: index_state(conn, spec) for spec in specs}


def index_state(conn: Any, spec: IndexSpec) -> str:
    """'valid', 'invalid' (a failed CONCURRENTLY build) or 'missing'."""
    row = conn.execute(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_class t ON t.oid = i.indrelid WHERE c.relname = %s AND t.relname = %s",
        (spec.name, spec.table),
    ).fetchone()
    if row is None:
        return "missing"
    return "valid" if row[0] else "invalid"


def index_findings(states: dict[IndexSpec, str]) -> list[Finding]:
    findings = []
    for spec, status in sorted(states.items(), key=lambda kv: kv[0].name):
        if status == "missing":
            findings.append(
                Finding(
                    "API_INDEX_MISSING",
                    spec.name,
                    field=f"/{spec.table}/{spec.column}",
                    message=(
                        f"expected {spec.method} index on {spec.table}({spec.column}) is absent"
                    ),
                )
            )
        elif status == "invalid":
            findings.append(
                Finding(
                    "API_INDEX_INVALID",
                    spec.name,
                    field=f"/{spec.table}/{spec.column}",
                    message="index exists but is INVALID (a failed concurrent build)",
                )
            )
    return findings


def ensure_index(svc: Service, spec: IndexSpec) -> dict[str, Any]:
    """Build the index CONCURRENTLY if absent (an INVALID leftover is dropped first).
    Idempotent: an existing valid index is left alone."""
    with connect(svc) as conn:
        before = index_state(conn, spec)
        if before == "valid":
            return {"index": spec.name, "created": False, "state": "valid"}
        if before == "invalid":
            conn.execute(spec.drop_sql)
        conn.execute(spec.create_sql)
        after = index_state(conn, spec)
    return {
        "index": spec.name,
        "created": True,
        "replaced_invalid": before == "invalid",
        "state": after,
    }


def drop_index(svc: Service, spec: IndexSpec) -> dict[str, Any]:
    """Undo of ensure_index: DROP INDEX CONCURRENTLY IF EXISTS. Safe to run twice."""
    with connect(svc) as conn:
        before = index_state(conn, spec)
        conn.execute(spec.drop_sql)
    return {"index": spec.name, "dropped": before != "missing"}


@undoable("api.drop_index")
def _undo_create_index(
    target: Target, name: str, table: str, column: str, method: str
) -> dict[str, Any]:
    spec = _spec({"name": name, "table": table, "column": column, "method": method})
    if spec is None:
        raise ValueError(f"not an index spec: {name} on {table}({column}) using {method}")
    return drop_index(Service.from_target(target), spec)
