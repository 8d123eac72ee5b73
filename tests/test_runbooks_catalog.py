"""The catalog-record runbooks end to end through `kfm-runbook run` (real kernels):
STAC/DCAT/PROV validation, license / sensitivity labels, mystery datasets.

Flows that change the target (apply, idempotency, rollback) run the kernel here; verdicts
of a read-only run on a golden case's target are read from that golden (`golden_run`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import scrapbook

from .conftest import KFM_SAMPLE, Cli
from .helpers import applied_actions as _actions
from .helpers import coverage, golden_run
from .helpers import run_json as _run

pytestmark = pytest.mark.slow

# runbook -> (checks that FAIL on the faulty sandbox, finding codes triage records there,
#             the file a containment action withdraws first, relative to the sandbox)
FAULTS: dict[str, tuple[set[str], list[str], str]] = {
    "RBK-catalog-stac-validation": (
        {"records-valid", "table-record_verdicts"},
        ["PROV_REF_UNDECLARED", "TRUST_CLASS_DEPENDENCY_MISMATCH"],
        "catalog_records/validation/published/items/kfm-sbx-streams-proof.json",
    ),
    "RBK-catalog-license-sensitivity": (
        {"licenses", "sensitivity-labels", "nothing-withheld-is-published", "table-record_labels"},
        ["LICENSE_MISSING", "SENSITIVITY_LABEL_INVALID", "SENSITIVITY_LABEL_MISSING"],
        "catalog_records/labels/published/dcat/kfm-sbx-landcover-distribution.json",
    ),
    "RBK-catalog-mystery-dataset": (
        {"catalog-provenance", "table-entry_provenance"},
        ["MYSTERY_DATASET", "PROVENANCE_REF_UNRESOLVED"],
        "catalog_records/provenance/catalog/kfm-sbx-soils-2026.json",
    ),
}


def _scraps(ws: Path, out: dict[str, Any]) -> Any:
    return scrapbook.read_notebook(str(ws / out["notebook"])).scraps


def _codes(scraps: Any) -> list[str]:
    return sorted({s.data["code"] for n, s in scraps.items() if n.startswith("kfm.finding.")})


@pytest.mark.parametrize("runbook", sorted(FAULTS))
def test_fault_found_contained_idempotent_and_reversible(
    cli: Cli, incident: tuple[str, Path], sandbox: Path, runbook: str
) -> None:
    incident_id, ws = incident
    failing, codes, first = FAULTS[runbook]
    triage = _run(cli, runbook, incident_id, sandbox)
    assert triage["_exit"] == 1 and triage["outcome"] == "failed"
    assert {n for n, s in triage["statuses"].items() if s == "FAIL"} == failing
    assert _codes(_scraps(ws, triage)) == codes
    assert (sandbox.parent / first).is_file()  # read-only: nothing moved

    contained = _run(cli, runbook, incident_id, sandbox, "--apply")
    assert contained["_exit"] == 0 and contained["outcome"] == "passed", contained["statuses"]
    actions = _actions(ws)
    assert actions and all(a["ok"] for a in actions)
    assert not (sandbox.parent / first).exists()

    again = _run(cli, runbook, incident_id, sandbox, "--apply")
    assert again["_exit"] == 0 and again["findings"] == 0
    assert len(_actions(ws)) == len(actions)  # nothing left to change

    undo = next(a for a in actions if a["title"].split()[1] in first)
    rolled = cli("rollback", incident_id, undo["action_id"], "--apply")
    assert rolled.exit_code == 0, rolled.output
    assert (sandbox.parent / first).is_file()


@pytest.mark.parametrize("runbook", sorted(FAULTS))
def test_clean_sandbox_verifies(runbook: str) -> None:
    out = golden_run(runbook, "sandbox-clean")  # golden_run: why no kernel run is needed
    assert set(out["statuses"].values()) == {"PASS"} and out["codes"] == []
    assert all(c["coverage"]["in_scope"] > 0 for c in out["checks"])


def test_kfm_validation_fixture_verdicts() -> None:
    out = golden_run("RBK-catalog-stac-validation", "kfm-catalog-validation")
    assert out["statuses"] == {
        "records-valid": "FAIL",  # KFM's invalid fixtures and placeholder examples
        "table-record_verdicts": "FAIL",  # the same records, in its own verdict table
        "kfm-fixture-verdicts": "PASS",
    }
    assert coverage(out, "kfm-fixture-verdicts") == (20, 20)
    rows = out["scraps"]["kfm.table.kfm_expectations"]
    assert len(rows) == 20
    for row in rows:
        assert row["outcome"] == row["expected"]["outcome"], row
        assert row["codes"] == row["expected"]["codes"], row


def test_kfm_label_fixture_verdicts() -> None:
    out = golden_run("RBK-catalog-license-sensitivity", "kfm-catalog-labels")
    assert out["statuses"]["kfm-fixture-verdicts"] == "PASS"
    assert coverage(out, "kfm-fixture-verdicts") == (5, 5)
    assert out["statuses"]["label-documents"] == "FAIL"  # the three invalid fixtures
    assert out["statuses"]["policy-profile"] == "HOLD"  # profiles.yaml is a placeholder
    docs = {Path(d["file"]).name: d for d in out["scraps"]["kfm.table.label_documents"]}
    assert {n: d["outcome"] for n, d in docs.items()} == {
        "invalid_1.json": "FAIL",
        "invalid_2.json": "FAIL",
        "invalid_3.json": "FAIL",
        "valid_1.json": "PASS",
        "valid_2.json": "PASS",
    }
    assert all(d["reproduced"] for d in docs.values())
    assert all(d["matched"] for n, d in docs.items() if n.startswith("invalid"))


def test_kfm_trust_spine_cases() -> None:
    out = golden_run("RBK-catalog-mystery-dataset", "kfm-catalog-provenance")
    assert out["statuses"] == {
        "catalog-provenance": "FAIL",  # pm25_2026: a placeholder collection, placeholder evidence
        "table-entry_provenance": "FAIL",
        "trust-spine": "HOLD",  # two pinned files and ten schemas are not in the sample
        "trust-spine-negative-cases": "HOLD",  # schema_mismatch cannot be decided without them
    }
    scraps = out["scraps"]
    [entry] = scraps["kfm.table.entry_provenance"]
    assert "MYSTERY_DATASET" in entry["codes"]
    cases_file = (
        KFM_SAMPLE / "fixtures/contracts/v1/governance/trust_spine_fixture_slice/cases.json"
    )
    expected = {
        c["case_id"]: f"{c['expected_outcome']} {' '.join(c['expected_codes'])}"
        for c in json.loads(cases_file.read_text())["cases"]
    }
    reached = {row["case"]: row for row in scraps["kfm.table.trust_spine_cases"]}
    assert set(reached) == set(expected)
    for case_id, want in expected.items():
        if case_id == "schema_mismatch":
            assert reached[case_id]["status"] == "unverifiable"
        else:
            assert (
                reached[case_id]["reached"] == want and reached[case_id]["status"] == "reproduced"
            )
