"""Sensitive-layer checks: KFM layer-manifest expectations, label rules, reversible withholding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from kfm_runbooks.checks.security import layers
from kfm_runbooks.sandbox import create_sandbox
from kfm_runbooks.target import load_target

from .conftest import KFM_SAMPLE

KFM_TARGET = KFM_SAMPLE / "security_layers.target.yaml"
MANIFESTS = KFM_SAMPLE / "fixtures/data/layer_manifest"
IN_SCOPE = {
    "valid/valid_generalized_public_candidate.json",
    "valid/valid_legacy_minimal.json",
    "valid/valid_public_pmtiles_candidate.json",
    "valid/valid_restricted_cog_candidate.json",
    "invalid/invalid_governance_overclaim.json",
    "invalid/invalid_missing_layer_id.json",
    "invalid/semantic_invalid_public_rights.json",
    "invalid/semantic_invalid_transform_evidence.json",
}


def _config(target: Path) -> layers.LayersConfig:
    return layers.LayersConfig.from_target(load_target(target))


def test_kfm_layer_manifest_expectations_reproduce() -> None:
    """Every case of KFM's expected_findings_manifest.json about exposure, rights, sensitivity,
    governance or the schema: same outcome, same codes. The other cases (bounds, zoom, spec
    hash, ...) are other checks' business and are reported as out of scope, not claimed."""
    config = _config(KFM_TARGET)
    scan = layers.scan(config)
    rows = layers.compare_expected(scan, config)
    expected = json.loads((MANIFESTS / "expected_findings_manifest.json").read_text())
    assert len(rows) == len(expected["valid"]) + len(expected["invalid"]) == 16
    assert {r["case"] for r in rows if r["in_scope"]} == IN_SCOPE
    assert all(r["match"] for r in rows if r["in_scope"]), [r for r in rows if not r["match"]]
    reports = {Path(r.file).name: r for r in scan.reports if r.kind == "manifest"}
    for group in ("valid", "invalid"):
        for name, want in expected[group].items():
            if f"{group}/{name}" in IN_SCOPE:
                assert reports[name].outcome == want["outcome"], name
                assert reports[name].codes == sorted(want["findings"]), name


def test_kfm_layer_records_and_placeholder_policy() -> None:
    scan = layers.scan(_config(KFM_TARGET))
    [policy] = scan.policy_findings
    assert policy.code == "SEC_POLICY_UNDEFINED" and policy.severity == "hold"
    records = {r.file: (r.outcome, r.codes) for r in scan.reports if r.kind == "layer"}
    assert records["data/published/layers/archaeology/layer_registry.yaml"] == (
        "FAIL",
        ["SEC_LAYER_LABEL_MISSING"],
    )
    assert records["data/registry/layers/habitat/critical_habitat.yaml"] == (
        "HOLD",
        ["SEC_LAYER_LABEL_MISSING"],
    )
    assert len(records) == 7
    withheld = {r.file for r in scan.to_withhold()}
    assert "data/published/layers/settlements-infrastructure/mission_sites.layer.yaml" in withheld
    assert not any("habitat" in f for f in withheld)  # unpublished: HOLD, not taken down


def test_sandbox_fault_and_clean_variant(tmp_path: Path) -> None:
    scan = layers.scan(_config(create_sandbox(tmp_path / "sbx")))
    assert sorted((f.code, f.subject) for f in scan.findings) == [
        (
            "SEC_LAYER_FIELD_NOT_REDACTED",
            "security/layers/published/rare-species-occurrences.layer.yaml",
        ),
        (
            "SEC_LAYER_REDACTION_MISSING",
            "security/layers/published/rare-species-occurrences.layer.yaml",
        ),
        (
            "SEC_LAYER_RESOLUTION_EXCEEDS_POLICY",
            "security/layers/published/rare-species-occurrences.layer.yaml",
        ),
    ]
    clean = layers.scan(_config(create_sandbox(tmp_path / "clean", clean=True)))
    assert clean.findings == [] and len(clean.reports) == 4


def _one_layer(tmp_path: Path, record: object, policy: object = None) -> layers.LayerScan:
    (tmp_path / "published").mkdir(exist_ok=True)
    (tmp_path / "published/layer.yaml").write_text(yaml.safe_dump(record))
    policy_path = None
    if policy is not None:
        policy_path = tmp_path / "profiles.yaml"
        policy_path.write_text(yaml.safe_dump(policy))
    config = layers.LayersConfig(
        tmp_path, policy_path, (tmp_path / "published",), (), (), None, None, tmp_path / "w"
    )
    return layers.scan(config)


def test_restricted_is_never_public_even_without_policy(tmp_path: Path) -> None:
    label = {"level": "restricted", "reason": "exact sites", "applied_at": "2026-05-20T00:00:00Z"}
    scan = _one_layer(tmp_path, {"id": "x", "audience": "public", "sensitivity": label})
    assert sorted(f.code for f in scan.findings) == [
        "SEC_LAYER_RESTRICTED_PUBLIC",
        "SEC_POLICY_UNDEFINED",
    ]
    internal = _one_layer(tmp_path, {"id": "x", "audience": "internal", "sensitivity": label})
    assert [f.code for f in internal.findings] == ["SEC_POLICY_UNDEFINED"]


def test_labels_must_follow_the_kfm_contract(tmp_path: Path) -> None:
    policy = {"profiles": {"public": {"public": True}}}
    for label, problem in [
        ({"level": "BAD", "reason": "r", "applied_at": "t"}, "level 'BAD'"),
        ({"level": "public", "reason": "r"}, "applied_at missing"),
        ({"level": "public", "reason": "r", "applied_at": "t", "extra": 1}, "unexpected field"),
        ("public", "not an object"),
    ]:
        scan = _one_layer(tmp_path, {"id": "x", "sensitivity": label}, policy)
        [finding] = scan.findings
        assert finding.code == "SEC_LAYER_LABEL_INVALID" and problem in finding.message


def test_unreadable_records_are_held(tmp_path: Path) -> None:
    (tmp_path / "published").mkdir()
    (tmp_path / "published/bad.yaml").write_text("a: [unclosed\n")
    (tmp_path / "elsewhere.yaml").write_text("id: x\n")
    (tmp_path / "published/link.yaml").symlink_to(tmp_path / "elsewhere.yaml")
    config = layers.LayersConfig(
        tmp_path,
        None,
        (tmp_path / "published", tmp_path / "gone"),
        (),
        (),
        None,
        None,
        tmp_path / "w",
    )
    scan = layers.scan(config)
    codes = sorted((f.code, f.subject, f.severity) for f in scan.findings)
    assert codes == [
        ("SEC_FILE_NOT_FOUND", "gone", "hold"),
        ("SEC_INPUT_SYMLINK_DENIED", "published/link.yaml", "hold"),
        ("SEC_POLICY_UNDEFINED", "(target)", "hold"),
        ("SEC_YAML_INVALID", "published/bad.yaml", "hold"),
    ]


def test_withhold_and_restore_are_byte_identical_and_idempotent(tmp_path: Path) -> None:
    shutil.copytree(KFM_SAMPLE, tmp_path / "kfm")
    config = _config(tmp_path / "kfm/security_layers.target.yaml")
    scan = layers.scan(config)
    originals = {r.file: (config.base / r.file).read_bytes() for r in scan.to_withhold()}
    for file in originals:
        assert not layers.withhold_layer(config, file, reason="x", incident="I")["already"]
        assert layers.withhold_layer(config, file, reason="x", incident="I")["already"]
    after = layers.scan(config)
    assert after.to_withhold() == []
    assert not [f for f in after.findings if f.severity == "blocking"]
    assert not [f for f in after.findings if f.code == "SEC_FILE_NOT_FOUND"]  # withheld, accounted
    for file, data in originals.items():
        assert layers.restore_layer(config, file)["restored"]
        assert not layers.restore_layer(config, file)["restored"]
        assert (config.base / file).read_bytes() == data
