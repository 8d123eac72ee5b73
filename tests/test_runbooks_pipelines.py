"""The four pipelines runbooks end to end: real `kfm-runbook run` processes on the project kernel.

Per runbook: the seeded sandbox fault is reported and the run exits 1; --apply contains it
(exit 0) and a second --apply changes nothing; an applied step rolls back; the clean
sandbox passes; KFM's fixtures reach their stated verdicts through the notebook (those
read-only verdicts are read from the golden of the same case: `golden_run`). The four
runbooks' runs are independent, so each group runs them in parallel (one kernel each).
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import scrapbook

from kfm_runbooks import ledger
from kfm_runbooks.checks.pipelines import determinism, releases, sync, watchers
from kfm_runbooks.sandbox import create_sandbox
from kfm_runbooks.target import load_target
from kfm_runbooks.workspace import create_incident

from .conftest import KFM_BIN, KFM_SAMPLE, sha256sum_check
from .helpers import assert_pass_coverage, coverage, golden_run

pytestmark = pytest.mark.slow
RUNBOOKS = [
    "RBK-pipelines-determinism-drift",
    "RBK-pipelines-etag-loop",
    "RBK-pipelines-partial-write",
    "RBK-pipelines-watcher-stuck",
]


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    actor = ["--actor", "tester"] if args[0] in ("run", "rollback") else []
    return subprocess.run(
        [str(KFM_BIN), *args, "--root", str(root), *actor],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _run(root: Path, runbook: str, incident_id: str, target: Path, *extra: str) -> dict[str, Any]:
    result = _cli(
        root, "run", runbook, "--incident", incident_id, "--target", str(target), "--json", *extra
    )
    out: dict[str, Any] = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    out["_exit"] = result.returncode
    out["_stderr"] = result.stderr[-3000:]
    assert_pass_coverage(out.get("checks", []))
    return out


def _parallel(work: Callable[[str], Any], items: list[str]) -> dict[str, Any]:
    with concurrent.futures.ThreadPoolExecutor(len(items)) as pool:
        return dict(zip(items, pool.map(work, items), strict=True))


def _scraps(ws: Path, out: dict[str, Any]) -> dict[str, Any]:
    book = scrapbook.read_notebook(str(ws / out["notebook"]))
    return {name: scrap.data for name, scrap in book.scraps.items()}


def _codes(scraps: dict[str, Any]) -> list[str]:
    return sorted(v["code"] for k, v in scraps.items() if k.startswith("kfm.finding."))


def _statuses(out: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in out["checks"]}


def _actions(ws: Path, run_ids: set[str] | None = None) -> list[dict[str, Any]]:
    entries = ledger.check(ws / "10_evidence/ledger.jsonl").entries
    return [
        e["data"]
        for e in entries
        if e["kind"] == "action" and (run_ids is None or e["data"]["run_id"] in run_ids)
    ]


# runbook -> (codes of the seeded fault, failing checks, probe: is the fault contained?)
FAULTS: dict[str, tuple[list[str], set[str], Callable[[Path], bool]]] = {
    "RBK-pipelines-watcher-stuck": (
        [
            "INGESTION_LAG_OVER_BUDGET",
            "WATCHER_HEARTBEAT_STALE",
            "WATCHER_OVERDUE",
            "WATCHER_RUN_STUCK",
        ],
        {"watcher-liveness"},
        lambda t: not watchers.scan(watchers.WatcherConfig.from_target(load_target(t))).affected(),
    ),
    "RBK-pipelines-etag-loop": (
        ["SYNC_NEVER_SETTLES"] + ["SYNC_REMATERIALIZED_UNCHANGED"] * 5,
        {"conditional-fetch-settles", "digest-gate"},
        lambda t: not sync.scan(sync.SyncConfig.from_target(load_target(t))).unheld_loops(),
    ),
    "RBK-pipelines-partial-write": (
        [
            "RELEASE_CURRENT_PARTIAL",
            "RELEASE_FILE_MISSING",
            "RELEASE_FILE_TRUNCATED",
            "RELEASE_TEMP_LEFTOVER",
        ],
        {"current-release-complete"},
        lambda t: (
            not releases.scan(releases.ReleaseConfig.from_target(load_target(t))).pointer_findings
        ),
    ),
    "RBK-pipelines-determinism-drift": (
        ["DETERMINISM_OUTPUT_DRIFT"],
        {"run-output-determinism"},
        lambda t: (
            not determinism.scan(
                determinism.DeterminismConfig.from_target(load_target(t))
            ).drifting_outputs()
        ),
    ),
}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, dict[str, dict[str, Any]]]:
    """One faulty sandbox; per runbook: triage, apply, apply again, roll the first step back."""
    base = tmp_path_factory.mktemp("pipelines-faulty")
    target = create_sandbox(base / "sandbox")
    root = base / "incidents"
    ws = create_incident("Pipelines faults", "Sev2", root=root, actor="tester")

    def chain(runbook: str) -> dict[str, Any]:
        probe = FAULTS[runbook][2]
        seen: dict[str, Any] = {"triage": _run(root, runbook, ws.incident_id, target)}
        seen["contained_after_triage"] = probe(target)
        seen["apply"] = _run(root, runbook, ws.incident_id, target, "--apply")
        seen["contained_after_apply"] = probe(target)
        seen["again"] = _run(root, runbook, ws.incident_id, target, "--apply")
        seen["actions"] = _actions(ws.path, {seen["apply"].get("run_id", "")})
        seen["actions_again"] = _actions(
            ws.path, {seen["again"].get("run_id", ""), seen["triage"].get("run_id", "")}
        )
        if seen["actions"]:
            undo = _cli(
                root,
                "rollback",
                ws.incident_id,
                seen["actions"][0]["action_id"],
                "--apply",
                "--json",
            )
            seen["undo"] = (undo.returncode, undo.stdout, undo.stderr)
        seen["contained_after_undo"] = probe(target)
        return seen

    return root, ws, _parallel(chain, RUNBOOKS)


@pytest.mark.parametrize("runbook", RUNBOOKS)
def test_fault_found_contained_idempotent_and_rolled_back(
    faulty: tuple[Path, Any, dict[str, dict[str, Any]]], runbook: str
) -> None:
    _, ws, chains = faulty
    seen = chains[runbook]
    codes, failing, _ = FAULTS[runbook]

    triage = seen["triage"]
    assert triage["_exit"] == 1 and triage["outcome"] == "failed", triage["_stderr"]
    assert {n for n, s in _statuses(triage).items() if s == "FAIL"} == failing
    assert _codes(_scraps(ws.path, triage)) == sorted(codes)
    assert not seen["contained_after_triage"], "without --apply nothing may change"

    applied = seen["apply"]
    assert applied["_exit"] == 0 and applied["outcome"] == "passed", applied["_stderr"]
    assert seen["contained_after_apply"]
    assert seen["actions"] and all(a["ok"] and a["undo"] for a in seen["actions"])

    again = seen["again"]
    assert again["_exit"] == 0 and again["findings"] == 0, again["_stderr"]
    assert seen["actions_again"] == [], "triage and a second apply must change nothing"

    code, stdout, stderr = seen["undo"]
    assert code == 0, stderr
    assert json.loads(stdout)["op"].startswith("pipelines.")
    assert not seen["contained_after_undo"], "rolling back the containment brings the fault back"


def test_concurrent_runs_leave_intact_evidence(
    faulty: tuple[Path, Any, dict[str, dict[str, Any]]],
) -> None:
    root, ws, _ = faulty
    assert _cli(root, "verify", ws.incident_id).returncode == 0
    assert sha256sum_check(ws.path).returncode == 0


@pytest.mark.parametrize("runbook", RUNBOOKS)
def test_clean_sandbox_passes(runbook: str) -> None:
    out = golden_run(runbook, "sandbox-clean")  # golden_run: why no kernel run is needed
    assert set(_statuses(out).values()) == {"PASS"} and out["codes"] == [], out["statuses"]


# KFM's fixtures, read-only, through each runbook: the golden case of each (golden_run)
KFM_CASES = {
    "RBK-pipelines-watcher-stuck": "kfm-watcher-fixtures",
    "RBK-pipelines-etag-loop": "kfm-run-receipts",
    "RBK-pipelines-partial-write": "kfm-ingestion-plans",
    "RBK-pipelines-determinism-drift": "kfm-generated-receipts",
}


def _kfm(runbook: str) -> dict[str, Any]:
    return golden_run(runbook, KFM_CASES[runbook])


def _manifest(path: str) -> Any:
    return json.loads((KFM_SAMPLE / path).read_text(encoding="utf-8"))


def test_kfm_watcher_fixture_verdicts() -> None:
    out = _kfm("RBK-pipelines-watcher-stuck")
    assert _statuses(out) == {
        "watcher-registry": "FAIL",
        "watcher-gate-packets": "FAIL",
    }  # no scheduled watcher: liveness has nothing in scope and is not claimed
    registries = {
        Path(r["file"]).name: (r["outcome"], r["codes"])
        for r in out["scraps"]["kfm.table.registry_verdicts"]
    }
    cases = _manifest(
        "fixtures/contracts/v1/source/watcher_registry/expected_findings_manifest.json"
    )
    assert registries == {
        Path(c["input"]).name: (c["expected_outcome"], c["expected_findings"])
        for c in cases["cases"]
    }
    packets = {Path(p["file"]).name: p for p in out["scraps"]["kfm.table.gate_packet_verdicts"]}
    folder = "fixtures/contracts/v1/watchers/watcher_gate_packet"
    valid = _manifest(f"{folder}/valid/expected_outputs_manifest.json")
    invalid = _manifest(f"{folder}/invalid/expected_findings_manifest.json")
    assert set(packets) == set(valid) | set(invalid)
    for name, expected in valid.items():
        row = packets[name]
        assert (row["outcome"], row["decision"], row["exit_code"]) == (
            "PASS",
            expected["decision"],
            expected["exit_code"],
        )
    for name, codes in invalid.items():
        assert (packets[name]["outcome"], packets[name]["codes"]) == ("ERROR", sorted(codes))


def test_kfm_run_receipt_verdicts() -> None:
    out = _kfm("RBK-pipelines-etag-loop")
    assert _statuses(out) == {
        "run-receipt-contract": "FAIL",
        "conditional-fetch-settles": "PASS",
    }  # no looping source: the digest gate has nothing in scope and is not claimed
    assert coverage(out, "conditional-fetch-settles")[1] > 0
    rows = out["scraps"]["kfm.table.receipt_verdicts"]
    folder = KFM_SAMPLE / "fixtures/contracts/v1/runtime/run_receipt"
    for row in rows:
        if "/valid/" in row["file"]:
            assert row["outcome"] == "PASS", row
            continue
        matcher = (
            folder / "invalid" / Path(row["file"]).name.replace(".json", ".expected_error.txt")
        )
        assert row["outcome"] == "FAIL" and row["codes"] == ["SCHEMA_INVALID"], row
        assert row["expected_error"] == matcher.read_text().strip(), row
        assert row["expected_error_matched"] is True, row
    assert sum("/invalid/" in r["file"] for r in rows) == 10 and len(rows) == 15


def test_kfm_ingestion_plan_verdicts() -> None:
    out = _kfm("RBK-pipelines-partial-write")
    assert _statuses(out) == {"ingestion-plans": "FAIL"}
    rows = {
        Path(r["file"]).name: (r["outcome"], r["codes"])
        for r in out["scraps"]["kfm.table.plan_verdicts"]
    }
    expected = _manifest(
        "fixtures/contracts/v1/source/source_ingestion_plan/invalid/expected_findings_manifest.json"
    )
    assert {n: v for n, v in rows.items() if n.startswith("invalid")} == {
        n: ("FAIL", c) for n, c in expected.items()
    }
    assert {n: v for n, v in rows.items() if n.startswith("valid")} == {
        "valid_event_cdc.json": ("PASS", []),
        "valid_http_conditional.json": ("PASS", []),
        "valid_scheduled_etl.json": ("PASS", []),
    }


def test_kfm_generated_receipt_audit() -> None:
    out = _kfm("RBK-pipelines-determinism-drift")
    assert _statuses(out) == {
        "generated-receipt-contract": "FAIL",
        "receipt-artifact-hashes": "FAIL",
    }
    scraps = out["scraps"]
    checks = {
        (a["receipt"], a["artifact"]): a["status"] for a in scraps["kfm.table.artifact_checks"]
    }
    audit = _manifest("_derived/receipt_artifact_hash_audit.json")
    entries = [e for e in audit["entries"] if "artifact" in e]
    assert len(entries) == 70
    for entry in entries:
        expected = entry["status_at_commit"] if entry["copied_to_sample"] else "absent"
        assert checks[(entry["receipt"], entry["artifact"])] == expected, entry
    receipts = {r["file"]: r for r in scraps["kfm.table.receipt_verdicts"]}
    unparsed = "data/receipts/generated/genrec-map-runtime-boundary-refresh-20260819.json"
    assert (receipts[unparsed]["outcome"], receipts[unparsed]["codes"]) == (
        "ERROR",
        ["JSON_INVALID"],
    )
    assert receipts["fixtures/generated_receipt/valid/minimal.json"]["outcome"] == "PASS"
    invalid = receipts["fixtures/generated_receipt/invalid/missing_contract_version.json"]
    assert invalid["outcome"] == "FAIL" and invalid["expected_error_matched"] is True
    snapshots = {
        Path(r["snapshot"]).name: r["decision"] for r in scraps["kfm.table.snapshot_comparisons"]
    }
    assert snapshots["current_unchanged.json"] == "NO_MATERIAL_CHANGE"
