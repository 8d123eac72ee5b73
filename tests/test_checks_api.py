"""api checks without services: access-log reading, 5xx analysis, plans and indexes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kfm_runbooks import paths
from kfm_runbooks.checks.api import base as api_common
from kfm_runbooks.checks.api import queries as api_queries
from kfm_runbooks.checks.api import server_errors as api_errors
from kfm_runbooks.checks.api.base import Probe
from kfm_runbooks.checks.live import MAX_STATE_BYTES, Live
from kfm_runbooks.errors import TargetError
from kfm_runbooks.sandbox import create_sandbox
from kfm_runbooks.target import load_target

from . import hostile

OWN = api_common.agent("RBK-api-5xx-spike")


def _line(second: int, path: str, status: int, client: str = "198.51.100.7", **kw: str) -> str:
    agent = kw.get("agent", "Mozilla/5.0")
    user = kw.get("user", "public")
    return (
        f'{client} - {user} [27/Nov/2026:09:00:{second:02d} +0000] "GET {path} HTTP/1.1" '
        f'{status} 10 "-" "{agent}" 1200\n'
    )


def _live(tmp_path: Path, log: str = "", config: Any = None) -> Live:
    (tmp_path / "logs").mkdir(exist_ok=True)
    (tmp_path / "state").mkdir(exist_ok=True)
    (tmp_path / "logs/access.log").write_text(log)
    (tmp_path / "config.json").write_text(
        config if isinstance(config, str) else json.dumps(config or {})
    )
    return Live(
        tmp_path / "config.json", tmp_path / "state", tmp_path / "services.json", tmp_path / "logs"
    )


def test_importing_the_api_checks_stays_light() -> None:
    code = (
        "import sys, kfm_runbooks.checks.api.abuse, kfm_runbooks.checks.api.auth, "
        "kfm_runbooks.checks.api.base, kfm_runbooks.checks.api.server_errors, "
        "kfm_runbooks.checks.api.queries\n"
        "heavy = [m for m in ('scrapbook', 'papermill', 'pandas', 'pydantic', 'pyarrow', "
        "'nbformat', 'prov', 'jupyter_client', 'psycopg') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_undo_ops_are_registered_under_the_domain() -> None:
    from kfm_runbooks.checks import undo_op

    for op in ("set_flag", "drop_index", "set_role_enforcement", "unblock_client"):
        assert callable(undo_op(f"api.{op}"))


# -- the access log -------------------------------------------------------------------------


def test_log_reader_skips_bad_lines_and_waits_for_a_torn_one(tmp_path: Path) -> None:
    text = _line(1, "/api/v1/layers", 200) + "garbage line\n" + _line(2, "/api/v1/layers", 500)
    live = _live(tmp_path, text + '203.0.113.9 - - [27/Nov/2026:09:00:03 +0000] "GET /api')
    read = api_common.read_log(live)
    assert [line.status for line in read.lines] == [200, 500] and read.bad == 1
    assert read.end == len(text.encode())
    with (tmp_path / "logs/access.log").open("a") as out:
        out.write('/v1/x HTTP/1.1" 404 1 "-" "curl" 5\n')
    more = api_common.read_log(live, read.end)
    assert [(x.client, x.route, x.status) for x in more.lines] == [
        ("203.0.113.9", "/api/v1/x", 404)
    ]


def test_missing_log_and_bad_timestamp(tmp_path: Path) -> None:
    live = _live(tmp_path)
    (tmp_path / "logs/access.log").unlink()
    assert api_common.read_log(live).lines == [] and api_common.log_size(live) == 0
    assert api_common.parse_line(_line(1, "/", 200).replace("Nov", "Foo")) is None


def test_window_and_percentile() -> None:
    lines = [api_common.parse_line(_line(s, "/api/v1/layers", 200)) for s in (1, 5, 9)]
    assert [x.time.second for x in api_common.window([x for x in lines if x], 5)] == [5, 9]
    assert api_common.percentile([5.0, 1.0, 3.0, 2.0, 4.0], 95) == 5.0
    assert api_common.percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert api_common.percentile([], 95) != api_common.percentile([], 95)  # NaN


def test_malformed_reference_and_state_are_findings(tmp_path: Path) -> None:
    live = _live(tmp_path, config="{not json")
    value, problems = api_common.reference(live)
    assert value == {} and [p.code for p in problems] == ["API_REFERENCE_UNREADABLE"]
    (tmp_path / "state/flags.json").write_text("[1, 2]")
    flags, problems = api_errors.current_flags(live)
    assert flags == {} and problems[0].code == "API_STATE_UNREADABLE"
    assert problems[0].severity == "hold"


def test_unreachable_api_is_a_probe_result_not_a_crash(tmp_path: Path) -> None:
    live = _live(tmp_path)  # no services.json: nothing is running
    answer = api_common.probe(live, "/health", user_agent=OWN)
    assert not answer.reached and answer.error == "TargetError"
    assert [f.code for f in api_common.reachability([answer])] == ["API_UNREACHABLE"]


# -- 5xx ------------------------------------------------------------------------------------------


def test_endpoints_come_from_the_reference_and_skip_hostile_ids(tmp_path: Path) -> None:
    live = Live.from_target(load_target(create_sandbox(tmp_path / "sbx")))
    paths = api_errors.endpoints(live.config)
    assert paths[0] == "/api/v1/catalog/items" and paths[-1] == "/api/v1/search"
    assert "/api/v1/layers/drought-monitor/times" in paths
    assert not any("wells-precise" in p for p in paths)  # restricted: never probed here
    hostile = {"layers": [{"id": "../admin", "sensitivity": "public"}], "stories": ["x", {}]}
    assert api_errors.endpoints(hostile) == [
        "/api/v1/catalog/items",
        "/api/v1/layers",
        "/api/v1/search",
    ]


def test_probe_findings_threshold_and_endpoints() -> None:
    probes = [Probe("/a", "public", 200, 0.01)] * 9 + [Probe("/b", "public", 500, 0.01)]
    codes = [(f.code, f.subject) for f in api_errors.probe_findings(probes, 0.05)]
    assert codes == [("API_5XX_SPIKE", "api"), ("API_ENDPOINT_5XX", "/b")]
    assert [f.code for f in api_errors.probe_findings(probes, 0.10)] == ["API_ENDPOINT_5XX"]
    assert api_errors.probe_findings([Probe("/a", None, None, 0, "URLError")], 0.01) == []
    stats = {s.path: s for s in api_errors.by_endpoint(probes)}
    assert stats["/b"].rate == 1.0 and stats["/a"].errors == 0


def test_log_findings_onset_and_series() -> None:
    text = (
        _line(1, "/api/v1/layers", 200)
        + _line(2, "/api/v1/layers?x=1", 500)
        + _line(2, "/api/v1/stories/s", 200)
        + _line(3, "/health", 503)
    )
    lines = [x for x in map(api_common.parse_line, text.splitlines()) if x]
    assert [(f.code, f.subject) for f in api_errors.log_findings(lines)] == [
        ("API_LOG_5XX", "/api/v1/layers")
    ]
    onset = api_errors.onset(lines, 0.01)
    assert onset is not None and onset.second == 2
    assert [(t.second, n, e) for t, n, e in api_errors.error_series(lines)] == [
        (1, 1, 0),
        (2, 2, 1),
    ]
    table = {row["route"]: row for row in api_errors.log_table(lines)}
    assert table["/api/v1/layers"]["5xx"] == 1 and table["/api/v1/stories/s"]["5xx"] == 0


def test_metrics_parsing() -> None:
    text = (
        "# TYPE kfm_http_requests_total counter\n"
        'kfm_http_requests_total{path="/api/v1/layers",status="200"} 7\n'
        'kfm_http_requests_total{path="/api/v1/layers",status="500"} 3\n'
        'kfm_http_requests_total{path="/health",status="503"} 1\n'
        "kfm_http_request_duration_seconds_sum 0.5\nnonsense {\n"
    )
    counters = api_errors.parse_metrics(text)
    assert counters[("/api/v1/layers", 500)] == 3 and len(counters) == 3
    assert api_errors.metric_totals(counters) == {"requests": 10, "5xx": 3}
    assert [f.subject for f in api_errors.metric_findings(counters)] == [
        "/api/v1/layers",
        "/health",
    ]


def test_rollouts_are_flags_on_that_the_reference_has_off() -> None:
    reference = {"flags": {"new_serializer": False, "citations_required": True, "beta": False}}
    current = {"new_serializer": True, "citations_required": False, "beta": False, "X;Y": True}
    assert api_errors.rollouts(current, reference) == ["new_serializer"]
    found = {(f.code, f.subject, f.severity) for f in api_errors.flag_findings(current, reference)}
    assert found == {
        ("API_FLAG_ROLLOUT", "new_serializer", "blocking"),
        ("API_FLAG_DRIFT", "citations_required", "info"),
    }
    assert api_errors.rollouts(current, {"flags": "broken"}) == []


def test_set_flag_refuses_a_hostile_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a flag name"):
        api_errors.set_flag(_live(tmp_path), "x\ny", False, OWN)


# -- slow queries ------------------------------------------------------------------------------


SEQ_PLAN = {
    "Plan": {
        "Node Type": "Aggregate",
        "Plans": [
            {
                "Node Type": "Gather",
                "Plans": [{"Node Type": "Seq Scan", "Relation Name": "observations"}],
            }
        ],
    },
    "Execution Time": 400.0,
}
BITMAP_PLAN = {
    "Plan": {
        "Node Type": "Aggregate",
        "Plans": [
            {
                "Node Type": "Bitmap Heap Scan",
                "Relation Name": "observations",
                "Plans": [
                    {"Node Type": "Bitmap Index Scan", "Index Name": "observations_geom_idx"}
                ],
            }
        ],
    }
}
GEOM = api_queries.IndexSpec("observations_geom_idx", "observations", "geom", "gist")


def test_the_known_statement_is_the_apis_own() -> None:
    """Guard: the runbook explains exactly what sandbox/services/api.py sends."""
    source = (paths.package_dir() / "sandbox" / "services" / "api.py").read_text()
    first, second = api_queries.SEARCH_SQL.split("FROM observations ")
    assert f'"{first}FROM observations "' in source and f'"{second}"' in source


def test_normalized_text_matches_pg_stat_statements() -> None:
    pgss = (
        "SELECT count(*), coalesce(avg(value), $5) FROM observations "
        "WHERE ST_Intersects(geom, ST_MakeEnvelope($1, $2, $3, $4, $6))"
    )
    statement = api_queries.Statement(1, 20, 300.0, 500.0, 6000.0, 20, pgss)
    assert statement.known == "search-bbox"
    other = api_queries.Statement(2, 20, 1.0, 1.0, 1.0, 1, "SELECT id FROM counties WHERE id = $1")
    assert other.known is None and other.as_dict()["statement"] == "(unknown)"


@pytest.mark.parametrize(
    ("query", "application"),
    [
        ("SELECT count(*) FROM observations WHERE id = $1", True),
        ("SELECT $1", False),
        ("SELECT * FROM pg_stat_statements", False),
        ('SELECT $2 FROM ONLY "public"."counties" x WHERE "id" OPERATOR(pg_catalog.=) $1', False),
        ("CREATE INDEX x ON observations (geom)", False),
        ("EXPLAIN (ANALYZE) SELECT * FROM observations", False),
        ("UPDATE observations SET value = $1", True),
    ],
)
def test_only_application_statements_are_ranked(query: str, application: bool) -> None:
    assert api_queries._application(query) is application


def test_plan_scans_and_findings() -> None:
    assert [(s.relation, s.kind, s.indexes) for s in api_queries.scans(SEQ_PLAN)] == [
        ("observations", "seq", ())
    ]
    assert [(s.kind, s.indexes) for s in api_queries.scans(BITMAP_PLAN)] == [
        ("bitmap", ("observations_geom_idx",))
    ]
    sql = api_queries.SEARCH_SQL
    found = api_queries.plan_findings("search-bbox", sql, SEQ_PLAN, [GEOM])
    assert [(f.code, f.subject, f.field) for f in found] == [
        ("API_QUERY_SEQ_SCAN", "observations", "/geom")
    ]
    assert api_queries.plan_findings("search-bbox", sql, BITMAP_PLAN, [GEOM]) == []
    # a seq scan of a table whose expected index is on a column the query does not use
    other = api_queries.IndexSpec("observations_t_idx", "observations", "observed_at", "btree")
    assert api_queries.plan_findings("search-bbox", sql, SEQ_PLAN, [other]) == []
    assert not api_queries.uses_index(SEQ_PLAN, GEOM) and api_queries.uses_index(BITMAP_PLAN, GEOM)
    assert not api_queries.uses_index({"Plan": {"Node Type": "Result"}}, GEOM)


def test_index_findings_and_sql() -> None:
    counties = api_queries.IndexSpec("counties_geom_idx", "counties", "geom", "gist")
    found = api_queries.index_findings({GEOM: "missing", counties: "invalid"})
    assert [(f.code, f.subject) for f in found] == [
        ("API_INDEX_INVALID", "counties_geom_idx"),
        ("API_INDEX_MISSING", "observations_geom_idx"),
    ]
    assert GEOM.create_sql == (
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS observations_geom_idx ON observations "
        "USING gist (geom)"
    )
    assert GEOM.drop_sql == "DROP INDEX CONCURRENTLY IF EXISTS observations_geom_idx"


def test_expected_indexes_from_the_target_and_hostile_entries(tmp_path: Path) -> None:
    target = load_target(create_sandbox(tmp_path / "sbx"))
    config = api_queries.QueryConfig.from_target(target)
    assert GEOM in config.indexes and config.problems == []
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\napi:\n  expected_indexes:\n"
        "    - {name: 'x; DROP TABLE observations', table: observations, column: geom}\n"
        "    - {name: ok_idx, table: observations, column: geom, method: evil}\n"
        "    - just a string\n"
        "    - {name: fine_idx, table: counties, column: geom}\n"
    )
    config = api_queries.QueryConfig.from_target(load_target(bad))
    assert [s.name for s in config.indexes] == ["fine_idx"]  # default method btree
    assert [p.subject for p in config.problems] == [
        "api.expected_indexes[0]",
        "api.expected_indexes[1]",
        "api.expected_indexes[2]",
    ]
    assert all(p.severity == "hold" for p in config.problems)


def test_bbox_parsing() -> None:
    assert api_queries.parse_bbox("-101,38,-100.5,38.5") == (-101.0, 38.0, -100.5, 38.5)
    for bad in ("1,2,3", "a,b,c,d", ""):
        with pytest.raises(Exception, match="minx,miny,maxx,maxy"):
            api_queries.parse_bbox(bad)


def test_explain_refuses_anything_but_select() -> None:
    with pytest.raises(ValueError, match="only SELECT"):
        api_queries.explain(None, "DELETE FROM observations", ())


def test_unreachable_database_is_hold_not_a_crash(tmp_path: Path) -> None:
    live = _live(tmp_path)  # no services.json
    problem = api_queries.reach(live)
    assert problem is not None and problem.code == "DB_UNREACHABLE" and problem.severity == "hold"
    plan, problems = api_queries.explain_statement(live, "search-bbox", (0.0, 0.0, 1.0, 1.0))
    assert plan is None and problems[0].code == "API_EXPLAIN_FAILED"


class _FakeConn:
    """Answers pg_stat_statements queries; refuses the `toplevel` form like PostgreSQL 13."""

    def __init__(self, rows: list[tuple[Any, ...]] | None, toplevel: bool) -> None:
        self.rows, self.toplevel, self.sent = rows, toplevel, []

    def execute(self, sql: str, params: tuple[Any, ...]) -> _FakeConn:
        self.sent.append(sql)
        if self.rows is None or ("toplevel" in sql and not self.toplevel):
            raise RuntimeError("undefined column / relation")
        return self

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows or []


def test_statement_ranking_falls_back_and_filters() -> None:
    rows = [
        (1, 20, 300.0, 500.0, 6000.0, 20, "SELECT count(*) FROM observations WHERE id = $1"),
        (2, 50, 1.0, 2.0, 50.0, 50, "SELECT $1"),
    ]
    old = _FakeConn(rows, toplevel=False)
    ranked = api_queries.statements(old, 5)
    assert ranked is not None and [s.queryid for s in ranked] == [1]
    assert len(old.sent) == 2 and "toplevel" not in old.sent[1]
    new = _FakeConn(rows, toplevel=True)
    assert api_queries.statements(new, 5) is not None and len(new.sent) == 1
    assert api_queries.statements(_FakeConn(None, toplevel=True), 5) is None


@pytest.mark.parametrize("kind", hostile.KINDS)
def test_a_reference_or_state_file_that_is_not_a_small_regular_file_is_held(
    tmp_path: Path, kind: str
) -> None:
    live = _live(tmp_path)
    hostile.plant(live.config_path, kind, b'{"tokens": {}}', MAX_STATE_BYTES)
    value, problems = api_common.reference(live)
    assert value == {} and [(p.code, p.severity) for p in problems] == [
        ("API_REFERENCE_UNREADABLE", "hold")
    ]
    hostile.plant(live.state_dir / "flags.json", kind, b"{}", MAX_STATE_BYTES)
    flags, problems = api_errors.current_flags(live)
    assert flags == {} and [(p.code, p.severity) for p in problems] == [
        ("API_STATE_UNREADABLE", "hold")
    ]


def test_an_access_log_that_is_a_link_is_refused_not_followed(tmp_path: Path) -> None:
    live = _live(tmp_path)
    line = _line(1, "/api/x", 200).encode()
    hostile.plant(live.logs_dir / "access.log", "symlink", line, 1 << 20)
    assert api_common.read_log(live).lines == []  # tail reader: nothing read through it
    with pytest.raises(TargetError, match="symbolic link"):
        live.access_log()  # whole-log reader: says why instead of an empty timeline
