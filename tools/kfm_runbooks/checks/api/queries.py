"""RBK-api-slow-queries: which statements are slow, why (their plan), and the missing index.

Reads PostgreSQL's own views through psycopg (imported lazily, only when a check talks to
the database): pg_stat_statements for the slowest application statements, EXPLAIN
(ANALYZE, BUFFERS, FORMAT JSON) of the offender, pg_indexes / pg_index for the indexes the
target expects (`api.expected_indexes`), pg_stat_activity for long-running queries. The
only change is building a missing index with CREATE INDEX CONCURRENTLY IF NOT EXISTS
(idempotent, no table lock); its undo drops it CONCURRENTLY.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ...errors import TargetError
from ...target import Target
from .. import Finding, undoable
from ..live import Live

RUNBOOK = "RBK-api-slow-queries"
# The statements the API runs, as its code sends them (api.py's /api/v1/search): what the
# runbook can EXPLAIN with representative parameters. Matched to pg_stat_statements by
# their normalized text (constants and placeholders folded).
SEARCH_SQL = (
    "SELECT count(*), coalesce(avg(value), 0) FROM observations "
    "WHERE ST_Intersects(geom, ST_MakeEnvelope(%s, %s, %s, %s, 4326))"
)
KNOWN_STATEMENTS = {"search-bbox": SEARCH_SQL}
INDEX_METHODS = frozenset({"gist", "btree", "brin", "gin", "spgist", "hash"})
_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_OWN_MARKERS = (
    "pg_stat_statements",
    "pg_stat_activity",
    "pg_indexes",
    "pg_index",
    "pg_class",
    "pg_backend_pid",
    "explain ",
    "operator(pg_catalog.",
)
_PGSS = (
    "SELECT queryid, calls, mean_exec_time, max_exec_time, total_exec_time, rows, query "
    "FROM pg_stat_statements WHERE calls >= %s"
)
# `toplevel` exists from PostgreSQL 14; older servers get the second form.
_PGSS_QUERIES = (
    _PGSS + " AND toplevel ORDER BY mean_exec_time DESC",
    _PGSS + " ORDER BY mean_exec_time DESC",
)
SCAN_KINDS = {
    "Seq Scan": "seq",
    "Index Scan": "index",
    "Index Only Scan": "index",
    "Bitmap Heap Scan": "bitmap",
}


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


@dataclass(frozen=True)
class QueryConfig:
    indexes: list[IndexSpec]
    problems: list[Finding] = field(default_factory=list)

    @classmethod
    def from_target(cls, target: Target) -> QueryConfig:
        """`api.expected_indexes` of the target; bad entries become findings."""
        raw = target.section("api").get("expected_indexes", [])
        specs, problems = [], []
        for n, entry in enumerate(raw if isinstance(raw, list) else [raw]):
            spec = _spec(entry)
            if spec is None:
                problems.append(
                    Finding(
                        "API_INDEX_SPEC_INVALID",
                        f"api.expected_indexes[{n}]",
                        severity="hold",
                        message="needs name, table, column (plain identifiers) and a method",
                    )
                )
            else:
                specs.append(spec)
        return cls(specs, problems)


def _spec(entry: Any) -> IndexSpec | None:
    if not isinstance(entry, dict):
        return None
    values = [str(entry.get(k, "")) for k in ("name", "table", "column")]
    method = str(entry.get("method", "btree"))
    if not all(_IDENT.fullmatch(v) for v in values) or method not in INDEX_METHODS:
        return None
    return IndexSpec(values[0], values[1], values[2], method)


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise TargetError(f"bbox {text!r} must be minx,miny,maxx,maxy") from exc
    if len(values) != 4:
        raise TargetError(f"bbox {text!r} must be minx,miny,maxx,maxy")
    return values[0], values[1], values[2], values[3]


# -- database access (psycopg, lazily) --------------------------------------------------------


@contextmanager
def connect(live: Live) -> Iterator[Any]:
    """An autocommit connection to the target's PostgreSQL (CONCURRENTLY needs autocommit)."""
    import psycopg

    with psycopg.connect(live.dsn, autocommit=True, connect_timeout=5) as conn:
        yield conn


def reach(live: Live) -> Finding | None:
    """None when the database answers, else DB_UNREACHABLE (hold)."""
    try:
        with connect(live) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # psycopg.Error, TargetError, OSError: unverifiable
        return Finding(
            "DB_UNREACHABLE",
            "postgres",
            severity="hold",
            message=f"the database did not answer ({type(exc).__name__}): nothing can be verified",
        )
    return None


@dataclass(frozen=True)
class Statement:
    queryid: int
    calls: int
    mean_ms: float
    max_ms: float
    total_ms: float
    rows: int
    query: str

    @property
    def known(self) -> str | None:
        text = normalize(self.query)
        return next((k for k, sql in KNOWN_STATEMENTS.items() if normalize(sql) == text), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "statement": self.known or "(unknown)",
            "calls": self.calls,
            "mean_ms": round(self.mean_ms, 1),
            "max_ms": round(self.max_ms, 1),
            "total_ms": round(self.total_ms, 1),
            "query": " ".join(self.query.split())[:160],
        }


def normalize(sql: str) -> str:
    """Fold placeholders ($1, %s) and numeric constants to ?, collapse whitespace, lower."""
    text = re.sub(r"\$\d+|%s|\b\d+(\.\d+)?\b", "?", sql)
    return " ".join(text.lower().split())


def statements(conn: Any, min_calls: int) -> list[Statement] | None:
    """Top-level application statements (called at least min_calls times), slowest mean
    first; None when pg_stat_statements is not available. Nested statements (foreign-key
    checks, functions, the inner query of EXPLAIN) are not what clients sent."""
    rows = None
    for sql in _PGSS_QUERIES:
        try:
            rows = conn.execute(sql, (min_calls,)).fetchall()
        except Exception:  # no such column / extension not loaded: the next, or give up
            rows = None
        if rows is not None:
            break
    if rows is None:
        return None
    found = [
        Statement(
            queryid=int(r[0]),
            calls=int(r[1]),
            mean_ms=float(r[2]),
            max_ms=float(r[3]),
            total_ms=float(r[4]),
            rows=int(r[5]),
            query=str(r[6]),
        )
        for r in rows
    ]
    return [s for s in found if _application(s.query)]


def _application(query: str) -> bool:
    text = query.lower().lstrip()
    if any(marker in text for marker in _OWN_MARKERS):
        return False
    if not text.startswith(("select", "with", "insert", "update", "delete")):
        return False
    return re.search(r"\b(from|into|update|join)\s+[a-z_]", text) is not None


def explain(conn: Any, sql: str, params: tuple[Any, ...]) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) of a read-only statement."""
    if not sql.lstrip().lower().startswith("select"):
        raise ValueError("only SELECT statements are explained with ANALYZE")
    row = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params).fetchone()
    value = row[0] if row else None
    plan = value[0] if isinstance(value, list) and value else value
    if not isinstance(plan, dict) or "Plan" not in plan:
        raise ValueError("EXPLAIN returned no plan")
    return plan


def explain_statement(
    live: Live, name: str, params: tuple[Any, ...]
) -> tuple[dict[str, Any] | None, list[Finding]]:
    """EXPLAIN a known statement; a database error is a HOLD finding, not a crash."""
    try:
        with connect(live) as conn:
            return explain(conn, KNOWN_STATEMENTS[name], params), []
    except Exception as exc:  # psycopg.Error (missing table, timeout), ValueError
        return None, [
            Finding(
                "API_EXPLAIN_FAILED",
                name,
                severity="hold",
                message=f"EXPLAIN failed ({type(exc).__name__}): the plan cannot be judged",
            )
        ]


def index_states(live: Live, specs: list[IndexSpec]) -> dict[IndexSpec, str]:
    with connect(live) as conn:
        return {spec: index_state(conn, spec) for spec in specs}


@dataclass(frozen=True)
class Scan:
    relation: str
    kind: str  # seq | index | bitmap
    node: str
    indexes: tuple[str, ...]


def scans(plan: dict[str, Any]) -> list[Scan]:
    """Every scan of a table in the plan, with the index(es) it goes through."""
    found: list[Scan] = []

    def walk(node: dict[str, Any]) -> None:
        kind = SCAN_KINDS.get(str(node.get("Node Type")))
        relation = node.get("Relation Name")
        if kind and relation:
            names = [node["Index Name"]] if node.get("Index Name") else []
            names += _bitmap_indexes(node) if kind == "bitmap" else []
            found.append(Scan(str(relation), kind, str(node["Node Type"]), tuple(names)))
        for child in node.get("Plans", []) or []:
            if isinstance(child, dict):
                walk(child)

    walk(plan.get("Plan", plan))
    return found


def _bitmap_indexes(node: dict[str, Any]) -> list[str]:
    names = []
    for child in node.get("Plans", []) or []:
        if child.get("Node Type") == "Bitmap Index Scan" and child.get("Index Name"):
            names.append(str(child["Index Name"]))
        names += _bitmap_indexes(child)
    return names


def plan_findings(
    statement: str, sql: str, plan: dict[str, Any], specs: list[IndexSpec]
) -> list[Finding]:
    """A sequential scan of a table whose filtered column has an expected index."""
    findings = []
    lowered = sql.lower()
    for scan in scans(plan):
        for spec in specs:
            if spec.table != scan.relation or not re.search(rf"\b{spec.column}\b", lowered):
                continue
            if scan.kind == "seq":
                findings.append(
                    Finding(
                        "API_QUERY_SEQ_SCAN",
                        spec.table,
                        field=f"/{spec.column}",
                        message=(
                            f"statement {statement} seq-scans {spec.table}; expected the "
                            f"{spec.method} index {spec.name}"
                        ),
                    )
                )
    return findings


def uses_index(plan: dict[str, Any], spec: IndexSpec) -> bool:
    """Every scan of the spec's table goes through an index (none is sequential)."""
    relevant = [s for s in scans(plan) if s.relation == spec.table]
    return bool(relevant) and all(s.kind != "seq" and s.indexes for s in relevant)


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


def long_runners(conn: Any, min_ms: float) -> list[dict[str, Any]]:
    """Client backends (not this one) whose current query has run longer than min_ms."""
    rows = conn.execute(
        "SELECT pid, state, extract(epoch FROM now() - query_start) * 1000, "
        "coalesce(wait_event_type, ''), left(query, 160) FROM pg_stat_activity "
        "WHERE backend_type = 'client backend' AND state <> 'idle' "
        "AND pid <> pg_backend_pid() AND now() - query_start > make_interval(secs => %s) "
        "ORDER BY query_start",
        (min_ms / 1000.0,),
    ).fetchall()
    return [
        {
            "pid": int(r[0]),
            "state": str(r[1]),
            "running_ms": round(float(r[2]), 1),
            "wait": str(r[3]),
            "query": " ".join(str(r[4]).split()),
        }
        for r in rows
    ]


# -- the repair (through run.action only) ---------------------------------------------------


def ensure_index(live: Live, spec: IndexSpec) -> dict[str, Any]:
    """Build the index CONCURRENTLY if absent (an INVALID leftover is dropped first).
    Idempotent: an existing valid index is left alone."""
    with connect(live) as conn:
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


def drop_index(live: Live, spec: IndexSpec) -> dict[str, Any]:
    """Undo of ensure_index: DROP INDEX CONCURRENTLY IF EXISTS. Safe to run twice."""
    with connect(live) as conn:
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
    return drop_index(Live.from_target(target), spec)
