"""Pipelines checks against KFM's own cases: every stated verdict is reproduced, and the
sandbox's seeded faults are found (clean variant: none)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kfm_runbooks.checks.pipelines import determinism, releases, sync, watchers
from kfm_runbooks.target import Target, load_target

from .conftest import KFM_SAMPLE

WATCHER_FIXTURES = KFM_SAMPLE / "fixtures/contracts/v1/source/watcher_registry"
GATE_FIXTURES = KFM_SAMPLE / "fixtures/contracts/v1/watchers/watcher_gate_packet"
PLAN_FIXTURES = KFM_SAMPLE / "fixtures/contracts/v1/source/source_ingestion_plan"


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _target(name: str, base: Path = KFM_SAMPLE) -> Target:
    return load_target(base / f"{name}.target.yaml")


def test_importing_the_pipelines_checks_stays_light() -> None:
    code = (
        "import sys, kfm_runbooks.record, kfm_runbooks.checks.pipelines.determinism, "
        "kfm_runbooks.checks.pipelines.releases, kfm_runbooks.checks.pipelines.sync, "
        "kfm_runbooks.checks.pipelines.watchers\n"
        "heavy = [m for m in ('scrapbook', 'papermill', 'pandas', 'pydantic', 'nbformat', "
        "'jupyter_client', 'jsonschema') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", "jsonschema must load lazily, the rest never"


# --- RBK-pipelines-watcher-stuck -------------------------------------------------------


def test_watcher_registry_manifest_reproduces() -> None:
    scan = watchers.scan(watchers.WatcherConfig.from_target(_target("pipelines_watcher_fixtures")))
    reports = {r.file: r for r in scan.registries}
    cases = _load(WATCHER_FIXTURES / "expected_findings_manifest.json")["cases"]
    assert len(reports) == len(cases) == 4
    for case in cases:
        report = reports[f"fixtures/contracts/v1/source/watcher_registry/{case['input']}"]
        assert report.outcome == case["expected_outcome"], case["case_id"]
        assert report.codes == case["expected_findings"], case["case_id"]


def test_watcher_gate_packet_manifests_reproduce() -> None:
    scan = watchers.scan(watchers.WatcherConfig.from_target(_target("pipelines_watcher_fixtures")))
    packets = {Path(p.file).name: p for p in scan.packets}
    outputs = _load(GATE_FIXTURES / "valid/expected_outputs_manifest.json")
    findings = _load(GATE_FIXTURES / "invalid/expected_findings_manifest.json")
    assert set(packets) == set(outputs) | set(findings)
    for name, expected in outputs.items():
        assert packets[name].outcome == "PASS", name
        got = {k: packets[name].details[k] for k in ("decision", "exit_code")}
        assert got == expected, name
    for name, codes in findings.items():
        assert packets[name].outcome == "ERROR" and packets[name].codes == sorted(codes), name


def test_real_control_plane_registry_pins_hold() -> None:
    scan = watchers.scan(watchers.WatcherConfig.from_target(_target("pipelines_watchers")))
    [registry] = scan.registries
    assert registry.outcome == "PASS" and registry.details["watchers"] == 2
    assert {w.status for w in scan.watchers} == {"manual"}  # both MANUAL_ONLY: nothing lags


def test_a_changed_spec_file_breaks_its_pin(tmp_path: Path) -> None:
    shutil.copytree(KFM_SAMPLE, tmp_path / "kfm")
    spec = tmp_path / "kfm/pipeline_specs/watchers/plants_drift.yaml"
    spec.write_bytes(spec.read_bytes().rstrip(b"\n"))  # the terminal-LF drift KFM once had
    scan = watchers.scan(
        watchers.WatcherConfig.from_target(_target("pipelines_watchers", tmp_path / "kfm"))
    )
    assert scan.registries[0].codes == ["SPEC_FILE_HASH_MISMATCH"]


def test_gate_profile_is_proven_by_its_pinned_hash(tmp_path: Path) -> None:
    text = (KFM_SAMPLE / "pipelines_watcher_fixtures.target.yaml").read_text()
    shutil.copytree(KFM_SAMPLE, tmp_path / "kfm")
    altered = text.replace("green_score_min: 80", "green_score_min: 70")
    (tmp_path / "kfm/pipelines_watcher_fixtures.target.yaml").write_text(altered)
    scan = watchers.scan(
        watchers.WatcherConfig.from_target(_target("pipelines_watcher_fixtures", tmp_path / "kfm"))
    )
    assert {tuple(p.codes) for p in scan.packets} == {("PROFILE_HASH_MISMATCH",)}


def test_sandbox_watcher_fault_and_clean(sandbox: Path, clean_sandbox: Path) -> None:
    scan = watchers.scan(watchers.WatcherConfig.from_target(load_target(sandbox)))
    assert scan.affected() == ["kfm.watcher.sbx.hydro_gauges"]
    assert sorted(f.code for f in scan.blocking(watchers.LIVENESS_CODES)) == [
        "INGESTION_LAG_OVER_BUDGET",
        "WATCHER_HEARTBEAT_STALE",
        "WATCHER_OVERDUE",
        "WATCHER_RUN_STUCK",
    ]
    assert [s.watcher_id for s in scan.stuck()] == ["kfm.watcher.sbx.hydro_gauges"]
    clean = watchers.scan(watchers.WatcherConfig.from_target(load_target(clean_sandbox)))
    assert [f for f in clean.findings if f.severity != "info"] == []
    assert {w.status for w in clean.watchers} == {"ok"}


# --- RBK-pipelines-etag-loop -----------------------------------------------------------


def test_run_receipt_verdicts_and_expected_errors_reproduce() -> None:
    scan = sync.scan(sync.SyncConfig.from_target(_target("pipelines_run_receipts")))
    folder = KFM_SAMPLE / "fixtures/contracts/v1/runtime/run_receipt"
    by_name = {Path(r.file).name: r for r in scan.receipts}
    valid = sorted(p.name for p in (folder / "valid").glob("*.json"))
    invalid = sorted(p.name for p in (folder / "invalid").glob("*.json"))
    assert len(valid) == 5 and len(invalid) == 10 and set(by_name) == {*valid, *invalid}
    for name in valid:
        assert by_name[name].outcome == "PASS", name
    for name in invalid:
        report = by_name[name]
        expected = (folder / "invalid" / name.replace(".json", ".expected_error.txt")).read_text()
        assert report.outcome == "FAIL" and report.codes == ["SCHEMA_INVALID"], name
        assert report.details["expected_error"] == expected.strip(), name
        assert report.details["expected_error_matched"] is True, name
    assert scan.loop_findings == []  # the fixtures are independent fetches, not a loop


def test_an_unreproduced_expected_error_is_a_finding(tmp_path: Path) -> None:
    shutil.copytree(KFM_SAMPLE, tmp_path / "kfm")
    matcher = (
        tmp_path
        / "kfm/fixtures/contracts/v1/runtime/run_receipt/invalid/invalid_3.expected_error.txt"
    )
    matcher.write_text('{"kind":"schema","field":"/stage","keyword":"pattern"}\n')
    scan = sync.scan(
        sync.SyncConfig.from_target(_target("pipelines_run_receipts", tmp_path / "kfm"))
    )
    report = next(r for r in scan.receipts if r.file.endswith("invalid_3.json"))
    assert "EXPECTED_ERROR_NOT_REPRODUCED" in report.codes
    assert report.details["expected_error_matched"] is False


def test_sandbox_sync_loop_and_clean(sandbox: Path, clean_sandbox: Path) -> None:
    scan = sync.scan(sync.SyncConfig.from_target(load_target(sandbox)))
    [looping] = scan.unheld_loops()
    assert looping.source == "https://data.kfm.example/hydro/gauges.csv"
    assert looping.unsettled_tail == 5
    codes = sorted(f.code for f in scan.loop_findings)
    assert codes == ["SYNC_NEVER_SETTLES"] + ["SYNC_REMATERIALIZED_UNCHANGED"] * 5
    clean = sync.scan(sync.SyncConfig.from_target(load_target(clean_sandbox)))
    assert clean.loop_findings == [] and clean.contract_failures() == []


def test_sandbox_receipts_honour_kfm_run_receipt_schema(sandbox: Path) -> None:
    from kfm_runbooks.checks.pipelines.base import SchemaValidator, read_json

    schema = SchemaValidator(KFM_SAMPLE / "schemas/contracts/v1/runtime/run_receipt.schema.json")
    receipts = sorted((sandbox.parent / "pipelines/sync/receipts").glob("*.json"))
    assert len(receipts) == 12
    for path in receipts:
        value, _ = read_json(path)
        assert schema.errors(value) == [], path.name


def test_validators_not_persisted_and_broken_binding_are_found(sandbox: Path) -> None:
    receipt = sandbox.parent / "pipelines/sync/receipts/sbx-landcover-3.json"
    doc = json.loads(receipt.read_text())
    doc["smart_sync"]["http_validators"]["request"]["etag"] = '"stale"'
    doc["smart_sync"]["prior_content_digest"] = "sha256:" + "9" * 64
    receipt.write_text(json.dumps(doc))
    scan = sync.scan(sync.SyncConfig.from_target(load_target(sandbox)))
    landcover = {
        (f.code, f.message.split(":")[0]) for f in scan.loop_findings if "landcover" in f.subject
    }
    assert landcover == {
        ("SYNC_PRIOR_BINDING_BROKEN", "sbx-landcover-3.json"),
        ("SYNC_VALIDATORS_NOT_PERSISTED", "sbx-landcover-3.json"),
        ("SYNC_PRIOR_BINDING_BROKEN", "sbx-landcover-4.json"),  # 304 keeps run 3's bad digest
    }


# --- RBK-pipelines-partial-write -------------------------------------------------------


def test_ingestion_plan_manifest_reproduces() -> None:
    scan = releases.scan(releases.ReleaseConfig.from_target(_target("pipelines_ingestion_plans")))
    plans = {Path(p.file).name: p for p in scan.plans}
    expected = _load(PLAN_FIXTURES / "invalid/expected_findings_manifest.json")
    valid = {p.name for p in (PLAN_FIXTURES / "valid").glob("*.json")}
    assert set(plans) == set(expected) | valid
    for name, codes in expected.items():
        assert plans[name].outcome == "FAIL" and plans[name].codes == sorted(codes), name
    for name in valid:
        assert plans[name].outcome == "PASS", name


def test_plan_semantics_without_a_schema(tmp_path: Path) -> None:
    """Without the schema, the plan rules still catch a no-partial-rerun ETL lane."""
    target = tmp_path / "t.target.yaml"
    folder = PLAN_FIXTURES
    target.write_text(
        "name: t\npipelines_releases:\n  plans:\n"
        f"    - {folder / 'invalid/invalid_etl_no_partial_rerun.json'}\n"
        f"    - {folder / 'valid/valid_scheduled_etl.json'}\n"
    )
    scan = releases.scan(releases.ReleaseConfig.from_target(load_target(target)))
    assert [p.codes for p in scan.plans] == [["PLAN_NO_PARTIAL_RERUN"], []]


def test_sandbox_partial_release_and_clean(sandbox: Path, clean_sandbox: Path) -> None:
    scan = releases.scan(releases.ReleaseConfig.from_target(load_target(sandbox)))
    verdicts = {r.file: r.codes for r in scan.releases}
    assert verdicts == {
        "2026-06-01": [],
        "2026-06-02": ["RELEASE_FILE_MISSING", "RELEASE_FILE_TRUNCATED", "RELEASE_TEMP_LEFTOVER"],
    }
    assert [f.code for f in scan.pointer_findings] == ["RELEASE_CURRENT_PARTIAL"]
    fallback = scan.fallback()
    assert fallback is not None and fallback.file == "2026-06-01"
    clean = releases.scan(releases.ReleaseConfig.from_target(load_target(clean_sandbox)))
    assert clean.findings == [] and clean.fallback() is None


# --- RBK-pipelines-determinism-drift ---------------------------------------------------


def test_receipt_artifact_hash_audit_reproduces() -> None:
    """Every answer of the audit: copied artifacts match/mismatch as recomputed at the
    commit; artifacts not copied to the sample are absent here, hence HOLD, never PASS."""
    scan = determinism.scan(
        determinism.DeterminismConfig.from_target(_target("pipelines_generated_receipts"))
    )
    audit = _load(KFM_SAMPLE / "_derived/receipt_artifact_hash_audit.json")
    checks = {(a.receipt, a.artifact): a.status for a in scan.artifacts}
    reports = {r.file: r for r in scan.receipts}
    entries = [e for e in audit["entries"] if "artifact" in e]
    assert len(entries) == 70
    for entry in entries:
        expected = entry["status_at_commit"] if entry["copied_to_sample"] else "absent"
        assert checks[(entry["receipt"], entry["artifact"])] == expected, entry
    for receipt, summary in audit["per_receipt_summary"].items():
        report = reports[receipt]
        if "parse_error" in summary:
            assert report.outcome == "ERROR" and report.codes == ["JSON_INVALID"]
            continue
        statuses = [s for (r, _), s in checks.items() if r == receipt]
        assert len(statuses) == sum(summary.values()), receipt
        expected_outcome = (
            "FAIL" if "mismatch" in statuses else "HOLD" if "absent" in statuses else "PASS"
        )
        assert report.outcome == expected_outcome, receipt
    unparsed = [e for e in audit["entries"] if e.get("parse_ok") is False]
    assert [reports[e["receipt"]].outcome for e in unparsed] == ["ERROR"]


def test_generated_receipt_fixtures_reproduce() -> None:
    scan = determinism.scan(
        determinism.DeterminismConfig.from_target(_target("pipelines_generated_receipts"))
    )
    reports = {r.file: r for r in scan.receipts}
    valid = reports["fixtures/generated_receipt/valid/minimal.json"]
    assert valid.outcome == "PASS" and valid.details["match"] == 1
    invalid = reports["fixtures/generated_receipt/invalid/missing_contract_version.json"]
    expected = (
        KFM_SAMPLE
        / "fixtures/generated_receipt/invalid/missing_contract_version.expected_error.txt"
    ).read_text()
    assert invalid.outcome == "FAIL" and invalid.codes == ["SCHEMA_INVALID"]
    assert invalid.details == {"expected_error": expected.strip(), "expected_error_matched": True}


def test_aqs_retrieval_only_drift_is_no_material_change() -> None:
    """KFM's aqs-site-delta receipt: NO_MATERIAL_CHANGE for retrieval-only fixture drift."""
    scan = determinism.scan(
        determinism.DeterminismConfig.from_target(_target("pipelines_generated_receipts"))
    )
    rows = {Path(r["snapshot"]).name: r for r in scan.snapshots}
    assert rows["current_unchanged.json"]["decision"] == "NO_MATERIAL_CHANGE"
    assert rows["current_unchanged.json"]["retrieval_fields_changed"] == [
        "captured_at",
        "source_revision",
    ]
    assert rows["current_location_shift.json"]["changed_fields"] == {"20-999-0001": ["latitude"]}
    assert rows["current_method_change.json"]["changed_fields"] == {
        "20-999-0001": ["method_code", "method_name"]
    }
    assert rows["current_metadata_correction.json"]["changed_fields"] == {
        "20-999-0001": ["site_name"]
    }


def test_sandbox_drift_and_clean(sandbox: Path, clean_sandbox: Path) -> None:
    config = determinism.DeterminismConfig.from_target(load_target(sandbox))
    scan = determinism.scan(config)
    assert [(f.code, f.field) for f in scan.drift] == [
        ("DETERMINISM_OUTPUT_DRIFT", "/outputs/daily_summary.csv")
    ]
    assert scan.drifting_outputs() == ["daily_summary.csv"]
    assert scan.distinct_digests() == {"daily_summary.csv": 2, "stations.json": 1}
    assert "different order" in determinism.output_diff(config, "daily_summary.csv")[0]
    clean = determinism.scan(determinism.DeterminismConfig.from_target(load_target(clean_sandbox)))
    assert clean.findings == [] and clean.distinct_digests() == {
        "daily_summary.csv": 1,
        "stations.json": 1,
    }


@pytest.mark.parametrize("part", ["watchers", "sync", "releases", "determinism"])
def test_sandbox_parts_are_deterministic(tmp_path: Path, part: str) -> None:
    import importlib

    build = importlib.import_module(f"kfm_runbooks.sandbox.parts.pipelines_{part}").build

    def tree(folder: Path) -> dict[str, bytes | str]:
        build(folder, False)
        return {
            p.relative_to(folder).as_posix(): (
                str(p.readlink()) if p.is_symlink() else p.read_bytes()
            )
            for p in folder.rglob("*")
            if p.is_symlink() or p.is_file()
        }

    assert tree(tmp_path / "a") == tree(tmp_path / "b")
