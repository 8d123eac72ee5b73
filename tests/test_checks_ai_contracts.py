"""ai checks over files: KFM's citation contracts and query-safety gate, hostile inputs."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kfm_runbooks.checks.ai import citation_reports as reports
from kfm_runbooks.checks.ai import gate as ai_gate
from kfm_runbooks.target import load_target

from .conftest import KFM_SAMPLE

CASES = KFM_SAMPLE / "fixtures/contracts/v1/evidence/citation_validation_report/cases.json"
SCHEMA = KFM_SAMPLE / "schemas/contracts/v1/evidence/citation_validation_report.schema.json"
PANELS = KFM_SAMPLE / "fixtures/ui/provenance_citations_projection"
SNAPSHOT = (
    "fixtures/contracts/v1/source/occurrence_retrieval_snapshot/query_safety/"
    "semantic_invalid/semantic_invalid_secret_value.json"
)


def _schema() -> dict[str, Any]:
    value: dict[str, Any] = json.loads(SCHEMA.read_text())
    return value


def _manifest() -> dict[str, Any]:
    value: dict[str, Any] = json.loads(CASES.read_text())
    return value


def test_importing_the_ai_checks_stays_light() -> None:
    code = (
        "import sys\n"
        "import kfm_runbooks.checks.ai.focus, kfm_runbooks.checks.ai.citations\n"
        "import kfm_runbooks.checks.ai.citation_reports, kfm_runbooks.checks.ai.gate\n"
        "import kfm_runbooks.checks.ai.retrieval, kfm_runbooks.checks.ai.evaluation\n"
        "import kfm_runbooks.checks.ai.actions, kfm_runbooks.checks.ai.reference\n"
        "heavy = [m for m in ('scrapbook', 'papermill', 'pandas', 'pydantic', 'nbformat', "
        "'jupyter_client', 'jsonschema', 'psycopg') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_kfm_citation_case_reaches_its_expected_verdict() -> None:
    """cases.json states status, report outcome and findings for each case: all 27 match."""
    manifest = _manifest()
    verdicts = reports.validate_file(CASES, _schema(), "cases.json")
    assert len(verdicts) == len(manifest["cases"]) == 27
    for case, verdict in zip(manifest["cases"], verdicts, strict=True):
        assert verdict.subject == f"cases.json#{case['case_id']}"
        assert verdict.status == case["expected_status"], case["case_id"]
        assert verdict.report_outcome == case["expected_report_outcome"], case["case_id"]
        assert verdict.findings == case["expected_findings"], case["case_id"]
        assert verdict.matches_expected is True


def test_derived_values_follow_the_declared_states() -> None:
    base = _manifest()["base"]
    citation, subject = copy.deepcopy(base["citations"][0]), base["subject"]
    assert reports.derive_citation(citation, subject) == (
        "PASS",
        ["CITATION_READY_FOR_DECLARED_SCOPE"],
    )
    citation["evidence_bundle"]["state"] = "ERROR"
    citation["rights_state"] = "DENIED"
    citation["freshness_state"] = "UNKNOWN"
    outcome, codes = reports.derive_citation(citation, subject)
    assert outcome == "ERROR"  # ERROR outranks DENY outranks ABSTAIN; all reasons kept
    assert codes == ["CITATION_BUNDLE_ERROR", "CITATION_RIGHTS_DENIED", "CITATION_TIME_UNKNOWN"]


def test_a_changed_report_is_caught_by_its_spec_hash() -> None:
    manifest = _manifest()
    report = reports.materialize(manifest["base"], {"case_id": "x"})
    assert reports.validate_report(report, _schema(), "r").status == "PASS"
    report["checked_at"] = "2026-08-11T00:00:00Z"  # any edit after hashing
    verdict = reports.validate_report(report, _schema(), "r")
    assert verdict.findings == [
        {"code": "CITATION_REPORT_SPEC_HASH_MISMATCH", "path": "/spec_hash"}
    ]


def test_kfm_provenance_panels_valid_and_invalid() -> None:
    verdicts = {
        name: reports.check_panel_file(path, name, KFM_SAMPLE)
        for path, name in reports.panel_files([PANELS])
    }
    assert sorted(verdicts) == [
        "provenance_citations_projection/invalid/doi-link-mismatch.json",
        "provenance_citations_projection/invalid/extra-field.json",
        "provenance_citations_projection/valid/available.json",
        "provenance_citations_projection/valid/denied.json",
        "provenance_citations_projection/valid/error.json",
        "provenance_citations_projection/valid/missing.json",
    ]
    for name, verdict in verdicts.items():
        assert verdict.ok == ("/valid/" in name), (name, verdict.problem)
    assert verdicts["provenance_citations_projection/invalid/extra-field.json"].problem.startswith(
        "/internal_detail"
    )


def test_an_answer_panel_without_citations_is_malformed() -> None:
    panel = json.loads((PANELS / "valid/available.json").read_text())
    panel["citations"] = []
    assert reports.check_panel(panel, "p").problem == "/citations: an ANSWER without citations"
    panel = json.loads((PANELS / "valid/missing.json").read_text())
    panel["citations"] = json.loads((PANELS / "valid/available.json").read_text())["citations"]
    assert not reports.check_panel(panel, "p").ok  # an abstention must not carry citations


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"{not json", "CITATION_REPORT_JSON_INVALID"),
        (b'{"a": 1, "a": 2}', "CITATION_REPORT_JSON_DUPLICATE_KEY"),
        (b"\xff\xfe", "CITATION_REPORT_JSON_INVALID"),
    ],
)
def test_hostile_report_files_become_findings(tmp_path: Path, content: bytes, code: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    [verdict] = reports.validate_file(bad, _schema(), "bad.json")
    assert verdict.status == "ERROR" and verdict.finding == (code, "/")
    [verdict] = reports.validate_file(tmp_path / "absent.json", _schema(), "absent.json")
    assert verdict.finding == ("CITATION_REPORT_INPUT_NOT_FILE", "/")
    (tmp_path / "list.json").write_text("[1, 2]")
    [verdict] = reports.validate_file(tmp_path / "list.json", _schema(), "list.json")
    assert verdict.finding == ("CITATION_REPORT_ROOT_NOT_OBJECT", "/")


def test_a_broken_fixture_case_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    manifest = _manifest()
    manifest["cases"] = [{"case_id": "bad-op", "operations": [{"op": "set", "path": "/nope/x"}]}]
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(manifest))
    [verdict] = reports.validate_file(path, _schema(), "cases.json")
    assert verdict.finding == ("CITATION_FIXTURE_CASE_INVALID", "/")


def _target(tmp_path: Path, section: str, data: dict[str, Any]) -> Path:
    path = tmp_path / "t.target.yaml"
    path.write_text(json.dumps({"name": "t", "kind": "fixture", section: data}))
    return path


def test_contract_paths_escaping_the_target_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "cases.json").write_bytes(CASES.read_bytes())
    (outside / "panel.json").write_bytes((PANELS / "valid/available.json").read_bytes())
    base = tmp_path / "target"
    base.mkdir()
    (base / "schema.json").write_bytes(SCHEMA.read_bytes())
    (base / "link.json").symlink_to(outside / "panel.json")
    target = load_target(
        _target(
            base,
            "ai_citations",
            {
                "reports": ["../outside/cases.json"],
                "schema": "schema.json",
                "panels": ["../outside/panel.json", "link.json"],
            },
        )
    )
    scan = reports.scan_contracts(target)
    assert [v.finding for v in scan.reports] == [("CITATION_REPORT_INPUT_PATH_DENIED", "/")]
    assert [p.ok for p in scan.panels] == [False, False]
    assert "escapes" in scan.panels[0].problem and "escapes" in scan.panels[1].problem
    assert scan.report_status == "HOLD"  # unverifiable, never PASS


def test_kfm_query_safety_fixture_is_denied_without_echoing_the_value() -> None:
    target = load_target(KFM_SAMPLE / "ai_query_safety.target.yaml")
    [verdict] = ai_gate.scan_snapshots(target)
    assert verdict.outcome == "FAIL"
    assert [(f.code, f.field) for f in verdict.findings] == [
        ("OCCURRENCE_RETRIEVAL_QUERY_SECRET_VALUE_DENIED", "/query_snapshot/predicates/4/value")
    ]
    assert verdict.file == SNAPSHOT
    assert "SYNTHETIC" not in json.dumps(verdict.as_row()) + str(verdict.findings)


def test_query_safety_rules_and_hostile_snapshots(tmp_path: Path) -> None:
    candidate = {
        "object_type": ai_gate.SNAPSHOT_TYPE,
        "query_snapshot": {
            "predicates": [
                {"field": "note", "value": ["ok", "mail me: someone@example.org"]},
                {"field": "api_key", "value": "x"},
                {"field": "year", "value": 2015},
                "not-a-predicate",
            ]
        },
    }
    codes = {(f.code, f.field) for f in ai_gate.query_findings(candidate, "c")}
    assert codes == {
        ("OCCURRENCE_RETRIEVAL_QUERY_EMAIL_VALUE_DENIED", "/query_snapshot/predicates/0/value/1"),
        ("OCCURRENCE_RETRIEVAL_QUERY_SECRET_VALUE_DENIED", "/query_snapshot/predicates/1/field"),
        ("QUERY_SAFETY_SHAPE_INVALID", "/query_snapshot/predicates/3"),
    }
    assert ai_gate.query_findings({"object_type": "Other"}, "c")[0].code == (
        "QUERY_SAFETY_SHAPE_INVALID"
    )
    folder = tmp_path / "snapshots"
    folder.mkdir()
    (folder / "a.json").write_text("{broken")
    (folder / "b.json").write_text(json.dumps(candidate))
    (folder / "c.json").symlink_to(folder / "b.json")
    target = load_target(_target(tmp_path, "ai_query_safety", {"snapshots": ["snapshots"]}))
    rows = {v.file: (v.outcome, v.as_row()["codes"]) for v in ai_gate.scan_snapshots(target)}
    assert rows == {
        "snapshots/a.json": ("ERROR", ["JSON_INVALID"]),
        "snapshots/b.json": (
            "FAIL",
            [
                "OCCURRENCE_RETRIEVAL_QUERY_EMAIL_VALUE_DENIED",
                "OCCURRENCE_RETRIEVAL_QUERY_SECRET_VALUE_DENIED",
                "QUERY_SAFETY_SHAPE_INVALID",
            ],
        ),
        "snapshots/c.json": ("ERROR", ["INPUT_PATH_DENIED"]),
    }
