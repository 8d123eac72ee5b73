"""RBK-api-slow-queries: which statements are slow, why (their plan), and the missing index.

Reads PostgreSQL's own views through the target's database (`postgres.dsn_env` /
`dsn_file`; psycopg, imported lazily): pg_stat_statements ranks the application's
statements; the top ones are EXPLAINed **as pg_stat_statements recorded them**, safely:
in a READ ONLY transaction with a statement_timeout, always rolled back, and never
executing a write. A statement with parameters ($1 …) is planned with the values the target
gives (`api.statement_params: [{match, params}]`), executed with EXPLAIN ANALYZE when it
reads; without values its generic plan is shown (PREPARE + plan_cache_mode =
force_generic_plan: what PostgreSQL 16's EXPLAIN (GENERIC_PLAN) does), marked as such.
Latency is measured by executing the ranked read statements (EXPLAIN ANALYZE's execution
time). pg_indexes / pg_index tell whether the indexes the target expects
(`api.expected_indexes`) exist; pg_stat_activity lists long-running queries. The only
change is building a missing index with CREATE INDEX CONCURRENTLY IF NOT EXISTS
(idempotent, no table lock); its undo drops it CONCURRENTLY.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field, replace
from typing import Any

from .. import Finding
from ..common.service import Service
from .indexes import (
    IndexSpec,
    _spec,
    _undo_create_index,
    drop_index,
    ensure_index,
    index_findings,
    index_state,
    index_states,
)
from .pg import connect, reach

__all__ = [  # the index and connection helpers live beside, runbooks reach them from here
    "IndexSpec",
    "_undo_create_index",
    "connect",
    "drop_index",
    "ensure_index",
    "index_findings",
    "index_state",
    "index_states",
    "reach",
]

RUNBOOK = "RBK-api-slow-queries"
PLAN_NAME = "kfm_runbook_plan"
_PARAM = re.compile(r"\$(\d+)")
_WRITES = re.compile(r"\b(insert|update|delete|merge|truncate|into|for\s+(update|share))\b", re.I)
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
class ParamSpec:
    """Values for the parameters of the statements whose text contains `match`."""

    match: str
    params: tuple[Any, ...]

    def fits(self, query: str) -> bool:
        return " ".join(self.match.lower().split()) in " ".join(query.lower().split())


@dataclass(frozen=True)
class QueryConfig:
    indexes: list[IndexSpec]
    problems: list[Finding] = field(default_factory=list)
    params: list[ParamSpec] = field(default_factory=list)

    @classmethod
    def from_service(cls, svc: Service) -> QueryConfig:
        """`api.expected_indexes` and `api.statement_params`; bad entries become findings."""
        section = svc.section("api")
        raw = section.get("expected_indexes", [])
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
        params = []
        raw_params = section.get("statement_params", [])
        for n, entry in enumerate(raw_params if isinstance(raw_params, list) else [raw_params]):
            values = entry.get("params") if isinstance(entry, dict) else None
            match = entry.get("match") if isinstance(entry, dict) else None
            if not isinstance(match, str) or not match.strip() or not isinstance(values, list):
                problems.append(
                    Finding(
                        "API_STATEMENT_PARAMS_INVALID",
                        f"api.statement_params[{n}]",
                        severity="hold",
                        message="needs match (text of the statement) and params (a list)",
                    )
                )
                continue
            if all(isinstance(v, str | int | float | bool) or v is None for v in values):
                params.append(ParamSpec(match, tuple(values)))
        return cls(specs, problems, params)

    def params_for(self, query: str) -> tuple[Any, ...] | None:
        return next((p.params for p in self.params if p.fits(query)), None)


@dataclass(frozen=True)
class Statement:
    queryid: int
    calls: int
    mean_ms: float
    max_ms: float
    total_ms: float
    rows: int
    query: str

    rank: int = 0  # 1 = the slowest mean

    @property
    def name(self) -> str:
        """How findings name it: its rank (a queryid differs between servers)."""
        return f"ranked #{self.rank}"

    @property
    def param_count(self) -> int:
        return max((int(n) for n in _PARAM.findall(self.query)), default=0)

    @property
    def reads(self) -> bool:
        """A plain read: SELECT / WITH without a data-modifying or locking clause."""
        text = self.query.lstrip().lower()
        return text.startswith(("select", "with")) and not _WRITES.search(text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "statement": self.name,
            "queryid": self.queryid,
            "kind": "read" if self.reads else "write",
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
    mine = [s for s in found if _application(s.query)]
    return [replace(s, rank=n) for n, s in enumerate(mine, 1)]


def _application(query: str) -> bool:
    text = query.lower().lstrip()
    if any(marker in text for marker in _OWN_MARKERS):
        return False
    if not text.startswith(("select", "with", "insert", "update", "delete")):
        return False
    return re.search(r"\b(from|into|update|join)\s+[a-z_]", text) is not None


@dataclass(frozen=True)
class PlanResult:
    """The plan of one ranked statement, and how it was obtained."""

    statement: Statement
    mode: str  # analyze | custom (not executed) | generic (no values) | failed
    plan: dict[str, Any] | None
    params_from: str  # target | none
    error: str = ""

    @property
    def execution_ms(self) -> float | None:
        value = (self.plan or {}).get("Execution Time")
        return float(value) if isinstance(value, int | float) else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "statement": self.statement.name,
            "mode": self.mode,
            "parameters": self.params_from,
            "error": self.error,
            "plan": self.plan,
        }


def _plan_text(query: str) -> str:
    """The statement as pg_stat_statements recorded it, refused if it is more than one."""
    text = query.strip().rstrip(";").strip()
    if not text or ";" in text:
        raise ValueError("not a single statement")
    return text


def _json_plan(row: Any) -> dict[str, Any]:
    value = row[0] if row else None
    plan = value[0] if isinstance(value, list) and value else value
    if not isinstance(plan, dict) or "Plan" not in plan:
        raise ValueError("EXPLAIN returned no plan")
    return plan


def plan_statement(
    conn: Any,
    statement: Statement,
    params: tuple[Any, ...] | None,
    *,
    timeout_ms: float,
    analyze: bool = True,
    timing: bool = True,
) -> PlanResult:
    """EXPLAIN one ranked statement, safely: READ ONLY transaction, statement_timeout,
    always rolled back; EXPLAIN ANALYZE (which executes) only for reads whose parameter
    values are known. `conn` must be in autocommit mode (the transaction is ours)."""
    from psycopg import sql

    given = params is not None and len(params) == statement.param_count
    source = "none"
    if params is not None:
        source = (
            "target"
            if given
            else f"target gives {len(params)} value(s) for {statement.param_count}: ignored"
        )
    try:
        text = _plan_text(statement.query)
    except ValueError as exc:
        return PlanResult(statement, "failed", None, source, str(exc))
    execute = analyze and statement.reads and (statement.param_count == 0 or given)
    options = "ANALYZE, BUFFERS, FORMAT JSON" if timing else "ANALYZE, TIMING OFF, FORMAT JSON"
    options = options if execute else "FORMAT JSON"
    conn.execute("BEGIN READ ONLY")
    try:
        conn.execute(
            "SELECT set_config('statement_timeout', %s, true)", (str(max(1, int(timeout_ms))),)
        )
        if statement.param_count == 0:
            row = conn.execute(sql.SQL("EXPLAIN ({}) {}").format(sql.SQL(options), sql.SQL(text)))
            mode = "analyze" if execute else "custom"
        else:
            conn.execute(
                sql.SQL("PREPARE {} AS {}").format(sql.Identifier(PLAN_NAME), sql.SQL(text))
            )
            if given:
                values = sql.SQL(", ").join(sql.Literal(v) for v in params or ())
                mode = "analyze" if execute else "custom"
            else:
                conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                values = sql.SQL(", ").join(sql.SQL("NULL") for _ in range(statement.param_count))
                mode = "generic"
            row = conn.execute(
                sql.SQL("EXPLAIN ({}) EXECUTE {}({})").format(
                    sql.SQL(options), sql.Identifier(PLAN_NAME), values
                )
            )
        return PlanResult(statement, mode, _json_plan(row.fetchone()), source)
    except Exception as exc:  # psycopg.Error (timeout, types, missing table), ValueError
        return PlanResult(statement, "failed", None, source, _reason(exc))
    finally:
        conn.execute("ROLLBACK")
        if statement.param_count:  # PREPARE outlives a rollback
            with contextlib.suppress(Exception):
                conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(PLAN_NAME)))


def _reason(exc: BaseException) -> str:
    state = getattr(exc, "sqlstate", None)
    first = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"{type(exc).__name__}{' ' + state if state else ''}: {first}"


def plan_ranked(
    svc: Service, ranked: list[Statement], config: QueryConfig, *, top: int, timeout_ms: float
) -> list[PlanResult]:
    """Plans of the `top` slowest ranked statements."""
    with connect(svc) as conn:
        return [
            plan_statement(conn, s, config.params_for(s.query), timeout_ms=timeout_ms)
            for s in ranked[: max(0, top)]
        ]


def plan_problems(results: list[PlanResult]) -> list[Finding]:
    findings = []
    for result in results:
        if result.mode == "failed":
            findings.append(
                Finding(
                    "API_EXPLAIN_FAILED",
                    result.statement.name,
                    severity="hold",
                    message=f"EXPLAIN failed ({result.error}): the plan cannot be judged",
                )
            )
        elif result.mode == "generic":
            findings.append(
                Finding(
                    "API_PLAN_GENERIC",
                    result.statement.name,
                    severity="info",
                    message=(
                        f"no parameter values (api.statement_params; {result.params_from}): "
                        "the generic plan is shown, not executed, and its latency is not measured"
                    ),
                )
            )
    return findings


def measure(
    svc: Service, results: list[PlanResult], config: QueryConfig, *, runs: int, timeout_ms: float
) -> dict[str, list[float]]:
    """Execution times (ms) of the ranked reads that can be executed (values known):
    `runs` executions each, through EXPLAIN ANALYZE in read-only, rolled-back transactions."""
    timings: dict[str, list[float]] = {}
    with connect(svc) as conn:
        for result in results:
            if result.mode != "analyze":
                continue
            values: list[float] = []
            for _ in range(max(0, runs)):
                again = plan_statement(
                    conn,
                    result.statement,
                    config.params_for(result.statement.query),
                    timeout_ms=timeout_ms,
                    timing=False,
                )
                if again.execution_ms is not None:
                    values.append(again.execution_ms)
            timings[result.statement.name] = values
    return timings


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


def relevant(result: PlanResult, specs: list[IndexSpec]) -> list[IndexSpec]:
    """Expected indexes a plan should use: their table is scanned and their column is in
    the statement (a full count of a table needs no index)."""
    if result.plan is None:
        return []
    tables = {scan.relation for scan in scans(result.plan)}
    text = result.statement.query.lower()
    return [
        spec for spec in specs if spec.table in tables and re.search(rf"\b{spec.column}\b", text)
    ]


def judge_plans(
    results: list[PlanResult], specs: list[IndexSpec]
) -> tuple[int, list[tuple[str, IndexSpec]]]:
    """(statement x expected index pairs judged, those whose plan scans sequentially)."""
    judged, seq = 0, []
    for result in results:
        for spec in relevant(result, specs):
            judged += 1
            if result.plan is not None and not uses_index(result.plan, spec):
                seq.append((result.statement.name, spec))
    return judged, seq


def uses_index(plan: dict[str, Any], spec: IndexSpec) -> bool:
    """Every scan of the spec's table goes through an index (none is sequential)."""
    relevant = [s for s in scans(plan) if s.relation == spec.table]
    return bool(relevant) and all(s.kind != "seq" and s.indexes for s in relevant)


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
