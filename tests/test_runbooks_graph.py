"""The four graph runbooks through the CLI, papermill and the real kernel.

Per runbook: the seeded fault is found (exit 1), `--apply` contains and recovers it
(exit 0), a second `--apply` changes nothing, and `kfm-runbook rollback` undoes a step.
The clean sandbox passes all four; KFM's STAC link-closure cases reach their expected
verdicts through the runbook; KFM's graph runtime matrix with an unreachable Neo4j holds
(these read-only verdicts are read from the golden of the same case: `golden_run`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kfm_runbooks.checks.graph import backup as graph_backup
from kfm_runbooks.checks.graph import db as graphdb
from kfm_runbooks.checks.graph import orphans as graph_orphans
from kfm_runbooks.checks.graph import schema as graph_schema
from kfm_runbooks.target import load_target

from .conftest import KFM_SAMPLE, Cli, sha256sum_check
from .helpers import applied_actions as _actions
from .helpers import finding_codes as _codes
from .helpers import golden_run
from .helpers import run_json as _run

pytestmark = pytest.mark.slow
CASES = KFM_SAMPLE / "fixtures/contracts/v1/data/stac_link_closure_assessment/cases.json"


def _fix_twice(
    cli: Cli, runbook: str, incident: tuple[str, Path], sandbox: Path, codes: list[str]
) -> list[dict[str, Any]]:
    """Triage finds `codes` (exit 1); apply fixes (exit 0); a second apply changes nothing."""
    incident_id, ws = incident
    triage = _run(cli, runbook, incident_id, sandbox)
    assert triage["_exit"] == 1 and triage["outcome"] == "failed", triage
    assert _codes(ws, triage) == codes
    fixed = _run(cli, runbook, incident_id, sandbox, "--apply")
    assert fixed["_exit"] == 0 and set(fixed["statuses"].values()) == {"PASS"}, fixed
    applied = _actions(ws)
    assert applied and all(a["ok"] for a in applied)
    again = _run(cli, runbook, incident_id, sandbox, "--apply")
    assert again["_exit"] == 0 and _actions(ws) == applied  # idempotent: nothing new
    assert sha256sum_check(ws).returncode == 0
    return applied


def _rollback(cli: Cli, incident_id: str, action: dict[str, Any]) -> None:
    result = cli("rollback", incident_id, action["action_id"], "--apply", "--json")
    assert result.exit_code == 0, result.output


def _graph(sandbox: Path) -> graphdb.GraphBackend:
    return graphdb.connect(graphdb.GraphConfig.from_target(load_target(sandbox)))


def test_orphaned_nodes(cli: Cli, incident: tuple[str, Path], sandbox: Path) -> None:
    applied = _fix_twice(
        cli,
        "RBK-graph-orphaned-nodes",
        incident,
        sandbox,
        ["GRAPH_ORPHAN_RECORD", "GRAPH_PROV_WITHOUT_EDGES"],
    )
    assert [a["undo"]["op"] for a in applied] == ["graph.unquarantine", "graph.unlink"]
    for action in reversed(applied):
        _rollback(cli, incident[0], action)
    db = _graph(sandbox)
    assert [f.code for f in graph_orphans.scan(db).findings] == [
        "GRAPH_ORPHAN_RECORD",
        "GRAPH_PROV_WITHOUT_EDGES",
    ]
    db.close()


def test_constraint_offline(cli: Cli, incident: tuple[str, Path], sandbox: Path) -> None:
    applied = _fix_twice(
        cli, "RBK-graph-constraint-offline", incident, sandbox, ["GRAPH_CONSTRAINT_MISSING"]
    )
    assert [a["undo"]["op"] for a in applied] == [
        "graph.unfreeze",
        "graph.undo_schema_repair",
        "graph.freeze",
    ]
    _rollback(cli, incident[0], applied[1])  # drop the re-created constraint again
    db = _graph(sandbox)
    decls, _ = graph_schema.load_declared(sandbox.parent / "graph/schema.json")
    assert [s.decl.name for s in db.schema_state(decls) if s.state != "ONLINE"] == ["kfm_asset_id"]
    assert not db.freeze_state().frozen
    db.close()


def test_count_anomaly(cli: Cli, incident: tuple[str, Path], sandbox: Path) -> None:
    applied = _fix_twice(
        cli, "RBK-graph-count-anomaly", incident, sandbox, ["GRAPH_COUNT_DROP", "GRAPH_COUNT_DROP"]
    )
    assert [a["undo"]["op"] for a in applied] == [
        "graph.unfreeze",
        "graph.undo_resync",
        "graph.freeze",
    ]
    db = _graph(sandbox)
    assert db.label_counts()["Asset"] == 6 and not db.freeze_state().frozen
    db.close()
    _rollback(cli, incident[0], applied[2])  # freeze again
    _rollback(cli, incident[0], applied[1])  # remove what the re-sync added
    db = _graph(sandbox)
    assert db.label_counts()["Asset"] == 3
    assert db.freeze_state().reasons == (f"{incident[0]}:count-anomaly",)
    db.close()


def test_backup_verification(cli: Cli, incident: tuple[str, Path], sandbox: Path) -> None:
    folder = sandbox.parent / "graph" / "backups"
    rotten, _ = graph_backup.read_pointer(folder)
    applied = _fix_twice(
        cli,
        "RBK-graph-backup-verification",
        incident,
        sandbox,
        [
            "GRAPH_BACKUP_CHECKSUM_MISMATCH",
            "GRAPH_BACKUP_CONTENT_MISMATCH",
            "GRAPH_BACKUP_RESTORE_FAILED",
        ],
    )
    fresh = applied[1]["result"]
    assert fresh["created"] and graph_backup.read_pointer(folder)[0] == fresh["manifest"]
    for action in reversed(applied):
        _rollback(cli, incident[0], action)
    assert graph_backup.read_pointer(folder)[0] == rotten
    assert not (folder / fresh["file"]).exists()


@pytest.mark.parametrize(
    "runbook",
    [
        "RBK-graph-orphaned-nodes",
        "RBK-graph-constraint-offline",
        "RBK-graph-count-anomaly",
        "RBK-graph-backup-verification",
    ],
)
def test_the_clean_sandbox_passes_all_four(runbook: str) -> None:
    out = golden_run(runbook, "sandbox-clean")  # golden_run: why no kernel run is needed
    assert set(out["statuses"].values()) == {"PASS"} and out["codes"] == [], out["statuses"]


def test_kfm_stac_link_closure_cases() -> None:
    out = golden_run("RBK-graph-orphaned-nodes", "kfm-stac-link-closure")
    assert out["statuses"] == {"declared-graph-closure": "FAIL"}
    table = out["scraps"]["kfm.table.packet_verdicts"]
    cases = json.loads(CASES.read_text())["cases"]
    assert {row["case_id"]: (row["outcome"], row["codes"]) for row in table} == {
        case["case_id"]: (
            case["expected_outcome"],
            [f"{f['code']} {f['path']}" for f in case["expected_findings"]],
        )
        for case in cases
    }


def test_kfm_runtime_matrix_with_unreachable_neo4j_holds() -> None:
    out = golden_run("RBK-graph-constraint-offline", "kfm-graph-runtime")
    assert out["statuses"] == {
        "declared-schema-online": "HOLD",
        "runtime-compatibility": "HOLD",
    }
    assert out["codes"] == ["GRAPH_RUNTIME_UNVERIFIED", "GRAPH_SCHEMA_NOT_DECLARED"]
