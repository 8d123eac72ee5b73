# ruff: noqa: F811 - the stock fixtures are imported by name and requested as arguments
"""The four api runbooks against stock services nobody here wrote for them.

A stock Python HTTP server (tests/stock/http_server.py: a share of 500s, a Combined Log
Format access log, its own Prometheus names) and a separately initdb'd PostgreSQL + PostGIS
cluster (tests/stock/postgres.py: 50k points without their GiST index). Each runbook gets a
target that uses only the documented keys (README, "Pointing runbooks at production" → api)
and must reach the verdict a human would.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import scrapbook
import yaml

from tests.stock.http_server import StockHttp, stock_http  # noqa: F401 - fixture
from tests.stock.postgres import GIST_INDEX, TABLE, Cluster, stock_postgres  # noqa: F401

from .conftest import Cli
from .helpers import applied_actions, run_json

pytestmark = pytest.mark.slow

SPIKE = "RBK-api-5xx-spike"
SLOW = "RBK-api-slow-queries"
AUTH = "RBK-api-auth-regression"
ABUSE = "RBK-api-rate-limit-abuse"
FAST = {
    SPIKE: ["-p", "probe_rounds=4", "-p", "probe_interval=0"],
    SLOW: ["-p", "latency_runs=3"],
    AUTH: ["-p", "probe_interval=0"],
    ABUSE: ["-p", "observe_seconds=2"],
}
ENDPOINTS = ["/items", "/items/1", "/layers", "/search?q=x", "/stories"]


def _target(folder: Path, **sections: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "target.yaml"
    path.write_text(yaml.safe_dump({"name": "stock", "kind": "live", **sections}))
    return path


def _api(server: StockHttp, **extra: Any) -> dict[str, Any]:
    return {
        "url": server.url,
        "health_path": "/healthz",
        "access_log": {"path": str(server.log), "format": "combined"},
        **extra,
    }


def _run(
    cli: Cli, runbook: str, incident: tuple[str, Path], target: Path, *extra: str
) -> dict[str, Any]:
    return run_json(cli, runbook, incident[0], target, *FAST[runbook], *extra)


def _codes(ws: Path, out: dict[str, Any]) -> set[str]:
    book = scrapbook.read_notebook(str(ws / out["notebook"]))
    return {s.data["code"] for n, s in book.scraps.items() if n.startswith("kfm.finding.")}


def _traffic(
    server: StockHttp, paths: list[str], rounds: int = 3, source: str = "127.0.0.1"
) -> None:
    """An ordinary client using the API (its requests land in the access log)."""
    host, port = server.url.removeprefix("http://").split(":")
    for _ in range(rounds):
        for path in paths:
            conn = http.client.HTTPConnection(
                host, int(port), timeout=10, source_address=(source, 0)
            )
            conn.request("GET", path, headers={"User-Agent": "curl/8.5"})
            conn.getresponse().read()
            conn.close()


# -- RBK-api-5xx-spike ------------------------------------------------------------------------


def test_5xx_spike_thirty_percent_500s_is_fail_and_containment_is_a_manual_action(
    cli: Cli, incident: tuple[str, Path], stock_http: StockHttp, tmp_path: Path
) -> None:
    stock_http.configure(error_share=0.3)
    metrics = {
        "url": f"{stock_http.url}/metrics",
        "requests_metric": "http_requests_total",
        "status_label": "code",
        "route_label": "handler",
    }
    target = _target(
        tmp_path / "t",
        api=_api(stock_http, endpoints=ENDPOINTS, metrics=metrics, flags={"new_checkout": False}),
    )
    out = _run(cli, SPIKE, incident, target, "--apply")
    assert out["_exit"] == 1 and out["outcome"] == "failed", out["_stderr"][-3000:]
    assert out["statuses"] == {"api-5xx-rate": "FAIL"}
    codes = _codes(incident[1], out)
    assert {"API_5XX_SPIKE", "API_ENDPOINT_5XX", "API_LOG_5XX", "API_METRICS_5XX"} <= codes
    assert "API_FLAGS_UNREAD" in codes  # no admin interface: the running flags are unknown
    assert applied_actions(incident[1]) == []  # no suspect flag: nothing to switch


def test_5xx_spike_a_rollout_is_switched_off_through_the_admin_command_and_back_on_rollback(
    cli: Cli, incident: tuple[str, Path], stock_http: StockHttp, tmp_path: Path
) -> None:
    """The 500s come with a flag the intended flags have off; the target names the server's
    admin CLI: containment switches the flag off through it, and the API recovers."""
    stock_http.configure(error_share=0.3, error_flag="new_checkout", flags={"new_checkout": True})
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "flags.yaml").write_text("flags: {new_checkout: false, dark_mode: true}\n")
    target = _target(
        tmp_path / "t",
        api=_api(stock_http, endpoints=ENDPOINTS, flags="flags.yaml"),
        admin={"command": stock_http.admin_command()},
    )
    triage = _run(cli, SPIKE, incident, target)
    assert triage["outcome"] == "failed", triage["_stderr"][-3000:]
    assert "API_FLAG_ROLLOUT" in _codes(incident[1], triage)

    contained = _run(cli, SPIKE, incident, target, "--apply")
    assert contained["_exit"] == 0 and contained["outcome"] == "passed", contained["_stderr"][
        -3000:
    ]
    [action] = applied_actions(incident[1])
    assert action["result"] == {"flag": "new_checkout", "previous": True, "value": False}
    assert stock_http.flags() == {"new_checkout": False}
    undone = cli("rollback", incident[0], action["action_id"], "--apply")
    assert undone.exit_code == 0, undone.output
    assert stock_http.flags() == {"new_checkout": True}


def test_5xx_spike_healthy_stock_server_passes_with_endpoints_from_its_access_log(
    cli: Cli, incident: tuple[str, Path], stock_http: StockHttp, tmp_path: Path
) -> None:
    stock_http.configure(error_share=0.0)
    stock_http.clear_log()
    _traffic(stock_http, ENDPOINTS[:3])
    target = _target(tmp_path / "t", api=_api(stock_http))  # no endpoints, no flags
    out = _run(cli, SPIKE, incident, target)
    assert out["_exit"] == 0 and out["outcome"] == "passed", out["_stderr"][-3000:]
    [check] = out["checks"]
    assert "12 fresh probes" in check["detail"]  # the three routes clients used, 4 rounds


def test_5xx_spike_without_endpoints_or_traffic_is_hold(
    cli: Cli, incident: tuple[str, Path], stock_http: StockHttp, tmp_path: Path
) -> None:
    stock_http.configure(error_share=0.0)
    stock_http.clear_log()
    out = _run(cli, SPIKE, incident, _target(tmp_path / "t", api=_api(stock_http)))
    assert out["_exit"] == 1 and out["outcome"] == "hold", out["_stderr"][-3000:]
    assert out["statuses"] == {"api-5xx-rate": "HOLD"}


# -- RBK-api-slow-queries ---------------------------------------------------------------------

GIST = {"name": GIST_INDEX, "table": TABLE, "column": "geom", "method": "gist"}
# pg_stat_statements shows the constants as parameters too: $5 = the empty default, $6 = SRID
BBOX_PARAMS = {"match": "ST_MakeEnvelope", "params": [-101.5, 37.5, -101.2, 37.8, "", 4326]}


def _secret(path: Path, value: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path.name


def _pg_target(folder: Path, cluster: Cluster, **api: Any) -> Path:
    dsn_file = _secret(folder / "pg.dsn", cluster.dsn)
    return _target(folder, postgres={"dsn_file": dsn_file}, api=api)


@pytest.fixture
def fresh_db(stock_postgres: Cluster) -> Iterator[Cluster]:
    """The cluster as a test expects it: no GiST index, a fresh workload history."""
    stock_postgres.drop_gist_index()
    stock_postgres.reset_statistics()
    stock_postgres.workload(12)
    yield stock_postgres
    stock_postgres.drop_gist_index()


def test_slow_queries_missing_gist_index_fails_naming_it_and_apply_builds_it(
    cli: Cli, incident: tuple[str, Path], fresh_db: Cluster, tmp_path: Path
) -> None:
    target = _pg_target(
        tmp_path / "t", fresh_db, expected_indexes=[GIST], statement_params=[BBOX_PARAMS]
    )
    out = _run(cli, SLOW, incident, target, "-p", "p95_threshold_ms=60000")
    assert out["_exit"] == 1 and out["outcome"] == "failed", out["_stderr"][-3000:]
    assert out["statuses"]["ranked-plans-use-indexes"] == "FAIL"
    assert out["statuses"]["expected-indexes"] == "FAIL"
    assert out["statuses"]["statement-p95"] == "PASS"  # measured with the ranked statement
    assert {"API_QUERY_SEQ_SCAN", "API_INDEX_MISSING"} <= _codes(incident[1], out)
    detail = {c["name"]: c["detail"] for c in out["checks"]}
    assert (
        GIST_INDEX in detail["expected-indexes"]
        and GIST_INDEX in detail["ranked-plans-use-indexes"]
    )

    fixed = _run(cli, SLOW, incident, target, "-p", "p95_threshold_ms=60000", "--apply")
    assert fixed["_exit"] == 0 and fixed["outcome"] == "passed", (fixed["_stderr"], fixed)
    [action] = applied_actions(incident[1])
    assert action["result"]["created"] and action["undo"]["op"] == "api.drop_index"
    assert fresh_db.sql("SELECT count(*) FROM pg_indexes WHERE indexname = %s", (GIST_INDEX,)) == [
        (1,)
    ]
    undone = cli("rollback", incident[0], action["action_id"], "--apply")
    assert undone.exit_code == 0, undone.output
    assert fresh_db.sql("SELECT count(*) FROM pg_indexes WHERE indexname = %s", (GIST_INDEX,)) == [
        (0,)
    ]


def test_slow_queries_without_parameters_judges_the_generic_plan_and_holds_latency(
    cli: Cli, incident: tuple[str, Path], fresh_db: Cluster, tmp_path: Path
) -> None:
    target = _pg_target(tmp_path / "t", fresh_db, expected_indexes=[GIST])
    out = _run(cli, SLOW, incident, target)
    assert out["outcome"] == "failed", out["_stderr"][-3000:]
    assert out["statuses"]["ranked-plans-use-indexes"] == "FAIL"  # the generic plan seq-scans
    assert out["statuses"]["statement-p95"] == "HOLD"  # no values: nothing executed, not timed
    assert "API_PLAN_GENERIC" in _codes(incident[1], out)


def test_slow_queries_healthy_database_passes(
    cli: Cli, incident: tuple[str, Path], fresh_db: Cluster, tmp_path: Path
) -> None:
    fresh_db.create_gist_index()
    target = _pg_target(
        tmp_path / "t", fresh_db, expected_indexes=[GIST], statement_params=[BBOX_PARAMS]
    )
    out = _run(cli, SLOW, incident, target, "-p", "p95_threshold_ms=60000")
    assert out["_exit"] == 0 and out["outcome"] == "passed", out["_stderr"][-3000:]


def test_slow_queries_never_executes_a_ranked_write(
    cli: Cli, incident: tuple[str, Path], fresh_db: Cluster, tmp_path: Path
) -> None:
    with fresh_db.connect() as conn:
        for n in range(6):
            conn.execute("UPDATE points SET name = %s WHERE id = %s", (f"point {n + 1}", n + 1))
        conn.execute("SELECT pg_sleep(0.05) FROM points WHERE id < 3 AND name = %s", ("x",))
    before = fresh_db.sql("SELECT md5(string_agg(name, ',' ORDER BY id)) FROM points")
    params = [BBOX_PARAMS, {"match": "UPDATE points", "params": ["HACKED", 1]}]
    target = _pg_target(tmp_path / "t", fresh_db, expected_indexes=[GIST], statement_params=params)
    out = _run(cli, SLOW, incident, target, "-p", "explain_top=10")
    assert out["outcome"] == "failed", out["_stderr"][-3000:]
    assert fresh_db.sql("SELECT md5(string_agg(name, ',' ORDER BY id)) FROM points") == before
    book = scrapbook.read_notebook(str(incident[1] / out["notebook"]))
    ranked = book.scraps["kfm.table.slowest_statements"].data
    assert any(r["kind"] == "write" and "update points" in r["query"].lower() for r in ranked)


def test_slow_queries_with_nothing_ranked_is_hold(
    cli: Cli, incident: tuple[str, Path], fresh_db: Cluster, tmp_path: Path
) -> None:
    fresh_db.reset_statistics()
    target = _pg_target(
        tmp_path / "t", fresh_db, expected_indexes=[GIST], statement_params=[BBOX_PARAMS]
    )
    out = _run(cli, SLOW, incident, target)
    assert out["outcome"] in ("hold", "failed"), out["_stderr"][-3000:]
    assert out["statuses"]["ranked-plans-use-indexes"] == "HOLD"
    assert out["statuses"]["statement-p95"] == "HOLD"


# -- RBK-api-auth-regression ------------------------------------------------------------------

MATRIX = {
    "roles": {"anonymous": ["public"], "analyst": ["public", "restricted"]},
    "resources": {"/open/streams": "public", "/private/wells": "restricted"},
}


def _auth_target(folder: Path, server: StockHttp, matrix: Any = None) -> Path:
    token_file = _secret(folder / "analyst.token", "tok-analyst")
    extra: dict[str, Any] = {"roles": {"analyst": {"token_file": token_file}, "anonymous": {}}}
    if matrix is not None:
        extra["access_matrix"] = matrix
    return _target(folder, api=_api(server, **extra))


def test_auth_without_an_access_matrix_is_hold(
    cli: Cli, incident: tuple[str, Path], stock_http: StockHttp, tmp_path: Path
) -> None:
    stock_http.configure(protected={"/private": ["tok-analyst"]})
    out = _run(cli, AUTH, incident, _auth_target(tmp_path / "t", stock_http))
    assert out["_exit"] == 1 and out["outcome"] == "hold", out["_stderr"][-3000:]
    assert out["statuses"] == {"roles-policy": "HOLD"}
    assert "API_REFERENCE_MISSING" in _codes(incident[1], out)


def test_auth_enforced_policy_passes_and_an_open_private_path_fails_with_a_manual_action(
    cli: Cli, incident: tuple[str, Path], stock_http: StockHttp, tmp_path: Path
) -> None:
    policy = tmp_path / "t" / "policy" / "access.yaml"
    policy.parent.mkdir(parents=True)
    policy.write_text(yaml.safe_dump(MATRIX))  # a policy file the target names
    target = _auth_target(tmp_path / "t", stock_http, "policy/access.yaml")
    stock_http.configure(protected={"/private": ["tok-analyst"]})
    ok = _run(cli, AUTH, incident, target)
    assert ok["_exit"] == 0 and ok["outcome"] == "passed", ok["_stderr"][-3000:]
    assert ok["redactions"] == {}  # the token never reached the notebook

    stock_http.configure(protected={})  # the deploy that dropped the auth middleware
    _traffic(stock_http, ["/private/wells"], rounds=1)  # a real client reads it
    leak = _run(cli, AUTH, incident, target, "--apply")
    assert leak["_exit"] == 1 and leak["outcome"] == "failed", leak["_stderr"][-3000:]
    assert leak["statuses"] == {"roles-policy": "FAIL"}
    assert {"API_AUTHZ_LEAK", "API_AUTHZ_LOG_LEAK"} <= _codes(incident[1], leak)
    [manual] = applied_actions(incident[1])  # no admin command: a human restores it
    assert manual["manual"] is True and manual["applied"] is False
    assert "anonymous → 403 on /private/wells" in manual["command"]


# -- RBK-api-rate-limit-abuse -----------------------------------------------------------------


class Flood:
    """A client hammering the stock server from its own loopback address until stopped."""

    def __init__(self, server: StockHttp, source: str = "127.0.0.2") -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(server, source), daemon=True)

    def _run(self, server: StockHttp, source: str) -> None:
        while not self.stop.is_set():
            _traffic(server, ["/items"], rounds=1, source=source)

    def __enter__(self) -> Flood:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def test_abuse_without_a_rate_limit_policy_is_hold(
    cli: Cli, incident: tuple[str, Path], stock_http: StockHttp, tmp_path: Path
) -> None:
    stock_http.configure()
    out = _run(cli, ABUSE, incident, _target(tmp_path / "t", api=_api(stock_http)))
    assert out["_exit"] == 1 and out["outcome"] == "hold", out["_stderr"][-3000:]
    assert out["statuses"]["abusive-traffic-contained"] == "HOLD"
    assert "API_REFERENCE_MISSING" in _codes(incident[1], out)


def test_abuse_quiet_server_passes_and_a_flood_fails_without_blocking_loopback(
    cli: Cli, incident: tuple[str, Path], stock_http: StockHttp, tmp_path: Path
) -> None:
    stock_http.configure()
    stock_http.clear_log()
    _traffic(stock_http, ENDPOINTS, rounds=1)
    target = _target(tmp_path / "t", api=_api(stock_http, rate_limit={"per_second": 2, "burst": 4}))
    quiet = _run(cli, ABUSE, incident, target)
    assert quiet["_exit"] == 0 and quiet["outcome"] == "passed", quiet["_stderr"][-3000:]

    with Flood(stock_http):
        flooded = _run(cli, ABUSE, incident, target, "--apply")
    assert flooded["_exit"] == 1 and flooded["outcome"] == "failed", flooded["_stderr"][-3000:]
    assert flooded["statuses"]["abusive-traffic-contained"] == "FAIL"
    assert {"API_ABUSIVE_CLIENT", "API_ABUSE_UNBLOCKABLE"} <= _codes(incident[1], flooded)
    assert applied_actions(incident[1]) == []  # a loopback client is never blocked


def test_abuse_from_a_proxys_json_log_hands_the_block_to_a_human(
    cli: Cli, incident: tuple[str, Path], stock_http: StockHttp, tmp_path: Path
) -> None:
    """A reverse proxy's JSON access log names a public client far above the policy; the
    target names no admin command, so the block is a manual action naming the address."""
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC).replace(microsecond=0)
    rows = [
        {"time": (now - timedelta(seconds=s)).isoformat(), "remote_addr": "198.51.100.7",
         "request": "GET /items HTTP/1.1", "status": 429 if n % 4 else 200,
         "http_user_agent": "scraper/2.0"}
        for s in range(10) for n in range(30)
    ]  # fmt: skip
    log = tmp_path / "proxy.json.log"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stock_http.configure()
    api = {"url": stock_http.url, "health_path": "/healthz",
           "access_log": {"path": str(log), "format": "json"},
           "rate_limit": {"per_second": 2, "burst": 4}}  # fmt: skip
    out = _run(cli, ABUSE, incident, _target(tmp_path / "t", api=api), "--apply")
    assert out["outcome"] == "passed", out["_stderr"][-3000:]  # the flood is over: fresh
    assert out["statuses"]["abusive-traffic-contained"] == "PASS"  # traffic is clean
    assert "API_ABUSIVE_CLIENT" in _codes(incident[1], out)  # but it happened, and by whom
    [manual] = applied_actions(incident[1])
    assert manual["manual"] is True and "198.51.100.7" in manual["command"]
