"""KFM's registry-side layer contracts: every verdict KFM states, and hostile input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kfm_runbooks.checks.ui import admission as ui_admission
from kfm_runbooks.checks.ui import contracts as ui_contracts
from kfm_runbooks.checks.ui import layer_manifest as ui_layer_manifest
from kfm_runbooks.target import load_target

from .conftest import KFM_SAMPLE

TARGET = KFM_SAMPLE / "ui_layer_registry.target.yaml"


@pytest.fixture(scope="module")
def verdicts() -> list[ui_contracts.CaseVerdict]:
    found, problems = ui_contracts.assess(
        ui_contracts.ContractsConfig.from_target(load_target(TARGET))
    )
    assert problems == []
    return found


def _cases() -> list[str]:
    view = json.loads((KFM_SAMPLE / "fixtures/ui/view_registry_profile/cases.json").read_text())
    admission = json.loads(
        (KFM_SAMPLE / "fixtures/runtime/layer_manifest_admission/cases.json").read_text()
    )
    manifests = json.loads(
        (KFM_SAMPLE / "fixtures/data/layer_manifest/expected_findings_manifest.json").read_text()
    )
    return (
        [f"view-registry:{c['case_id']}" for c in view["cases"]]
        + [f"layer-manifest:{g}/{n}" for g in ("valid", "invalid") for n in manifests[g]]
        + [f"admission:{c['case_id']}" for c in admission["cases"]]
    )


@pytest.mark.parametrize("case", _cases())
def test_every_kfm_stated_verdict_is_reproduced(
    verdicts: list[ui_contracts.CaseVerdict], case: str
) -> None:
    suite, name = case.split(":", 1)
    got = [v for v in verdicts if (v.suite, v.case) == (suite, name)]
    assert len(got) == 1, f"{case} was not assessed"
    verdict = got[0]
    assert verdict.expected_outcome is not None and verdict.matches, verdict.as_dict()


def test_all_43_cases_and_nothing_else(verdicts: list[ui_contracts.CaseVerdict]) -> None:
    assert len(verdicts) == len(_cases()) == 43
    outcomes = {
        v.suite: sorted({x.outcome for x in verdicts if x.suite == v.suite}) for v in verdicts
    }
    assert outcomes == {
        "view-registry": ["ABSTAIN", "DENY", "PASS"],
        "layer-manifest": ["FAIL", "PASS"],
        "admission": ["DENY", "ERROR", "HOLD", "PASS"],
    }


def test_verdict_findings_are_blocking_or_held(verdicts: list[ui_contracts.CaseVerdict]) -> None:
    found = ui_contracts.verdict_findings(verdicts)
    held = {f.subject for f in found if f.severity == "hold"}
    assert "view-registry:catalog-hold-abstain" in held
    assert "admission:legacy-held" in held
    assert {
        f.code
        for f in found
        if f.subject == "layer-manifest:invalid/semantic_invalid_zoom_range.json"
    } == {"ZOOM_RANGE_INCOHERENT"}
    assert not [f for f in found if f.subject == "admission:released-eligible"]


def _copy(tmp_path: Path) -> Path:
    for rel in (
        "fixtures/ui/view_registry_profile",
        "schemas/contracts/v1/ui",
        "fixtures/runtime/layer_manifest_admission",
        "fixtures/data/layer_manifest",
        "schemas/contracts/v1/data",
    ):
        shutil.copytree(KFM_SAMPLE / rel, tmp_path / rel)
    shutil.copy(TARGET, tmp_path / TARGET.name)
    return tmp_path / TARGET.name


def test_a_changed_expectation_is_detected(tmp_path: Path) -> None:
    """The comparison can fail: KFM expecting another outcome makes `matches` False."""
    target = _copy(tmp_path)
    cases = tmp_path / "fixtures/ui/view_registry_profile/cases.json"
    doc = json.loads(cases.read_text())
    doc["cases"][1]["expected_outcome"] = "PASS"
    cases.write_text(json.dumps(doc))
    found, _ = ui_contracts.assess(ui_contracts.ContractsConfig.from_target(load_target(target)))
    assert [v.case for v in found if v.matches is False] == ["catalog-hold-abstain"]


def test_hostile_input_becomes_findings(tmp_path: Path) -> None:
    target = _copy(tmp_path)
    (tmp_path / "fixtures/ui/view_registry_profile/cases.json").write_text("{not json")
    admission = tmp_path / "fixtures/runtime/layer_manifest_admission/cases.json"
    doc = json.loads(admission.read_text())
    doc["cases"].append({"case_id": "made-up", "mutation": "DELETE_EVERYTHING"})
    admission.write_text(json.dumps(doc))
    bad = tmp_path / "fixtures/data/layer_manifest/invalid/duplicate_key.json"
    bad.write_text('{"id": "a", "id": "b"}')
    outside = tmp_path.parent / "outside.json"
    outside.write_text("{}")
    (tmp_path / "fixtures/data/layer_manifest/invalid/escape.json").symlink_to(outside)
    found, problems = ui_contracts.assess(
        ui_contracts.ContractsConfig.from_target(load_target(target))
    )
    codes = {(p.code, p.subject.split("#")[-1]) for p in problems}
    assert ("UI_CONTRACT_INPUT_INVALID", "fixtures/ui/view_registry_profile/cases.json") in codes
    assert ("UI_CONTRACT_CASE_INVALID", "made-up") in codes
    by_case = {v.case: v for v in found}
    assert by_case["invalid/duplicate_key.json"].outcome == "ERROR"
    assert by_case["invalid/duplicate_key.json"].codes == ["JSON_DUPLICATE_KEY"]
    assert by_case["invalid/escape.json"].codes == ["INPUT_SYMLINK_DENIED"]


def test_a_path_escaping_the_target_is_refused(tmp_path: Path) -> None:
    target = _copy(tmp_path / "t")
    (tmp_path / "outside.json").write_text("{}")
    text = target.read_text().replace(
        "fixtures/runtime/layer_manifest_admission/cases.json", "../outside.json"
    )
    target.write_text(text)
    _, problems = ui_contracts.assess(ui_contracts.ContractsConfig.from_target(load_target(target)))
    assert any(
        p.code == "UI_CONTRACT_INPUT_INVALID" and p.message == "PATH_ESCAPE" for p in problems
    )


def test_admission_gates_in_kfm_order() -> None:
    base = json.loads(
        (KFM_SAMPLE / "fixtures/runtime/layer_manifest_admission/cases.json").read_text()
    )["base"]
    assert ui_admission.admit(base) == ("PASS", "LAYER_MANIFEST_REGISTER_ELIGIBLE")
    both = json.loads(json.dumps(base))
    both["authority"]["registry_mutated"] = True
    both["release_binding"]["release_state"] = "WITHDRAWN"
    assert ui_admission.admit(both) == ("DENY", "LAYER_MANIFEST_AUTHORITY_OVERCLAIM")
    assert ui_admission.admit([]) == ("ERROR", "LAYER_MANIFEST_ADMISSION_INPUT_INVALID")


def test_manifest_rules_on_a_broken_representation() -> None:
    doc = json.loads(
        (
            KFM_SAMPLE / "fixtures/data/layer_manifest/valid/valid_public_pmtiles_candidate.json"
        ).read_text()
    )
    doc["representation"].update({"protocol": "COG", "min_zoom": 9, "max_zoom": 3})
    codes = {c for c, _ in ui_layer_manifest.manifest_semantics(doc)}
    assert {"SOURCE_LAYER_FORBIDDEN", "ZOOM_RANGE_INCOHERENT", "SPEC_HASH_MISMATCH"} <= codes


def test_importing_the_ui_checks_stays_light() -> None:
    code = (
        "import sys\n"
        "from kfm_runbooks.checks.ui import a11y, contracts, plots, registry, stories, "
        "timeline\n"
        "heavy = [m for m in ('scrapbook', 'papermill', 'pandas', 'pydantic', 'nbformat', "
        "'jupyter_client', 'playwright', 'matplotlib', 'jsonschema') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
