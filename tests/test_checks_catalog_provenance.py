"""Mystery-dataset checks: KFM's placeholder pm25 entry, the trust spine's pins, chain and
13 negative cases (each expected verdict from cases.json), and the sandbox chains."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kfm_runbooks.checks.catalog import provenance
from kfm_runbooks.checks.catalog import trust_spine as spine
from kfm_runbooks.sandbox.parts import catalog_records
from kfm_runbooks.target import load_target

from .conftest import KFM_SAMPLE

SLICE = "fixtures/contracts/v1/governance/trust_spine_fixture_slice"


def _config(base: Path = KFM_SAMPLE) -> provenance.ProvenanceConfig:
    return provenance.ProvenanceConfig.from_target(
        load_target(base / "catalog_provenance.target.yaml")
    )


def test_kfm_pm25_collection_is_a_mystery_dataset() -> None:
    [entry] = provenance.scan(_config()).entries
    assert entry.file == "data/catalog/domain/atmosphere/pm25_2026/collection.json"
    assert entry.codes == ["CATALOG_ENTRY_PLACEHOLDER", "MYSTERY_DATASET", "PROVENANCE_PLACEHOLDER"]
    assert entry.chain == {"evidence": "data/proofs/atmosphere/pm25_2026/evidence_bundle.json"}


def test_trust_spine_baseline_holds_for_the_files_the_sample_lacks() -> None:
    config = _config().spine
    assert config is not None
    loaded = spine.load(config)
    assert len(loaded.objects) == 11  # every pinned artifact present and hashing to its pin
    assert sorted((f.code, f.field) for f in loaded.findings) == [
        ("PINNED_REF_UNAVAILABLE", "/dry_run/publication_deny_tool"),
        ("PINNED_REF_UNAVAILABLE", "/governing_refs/1"),
    ]
    chain = spine.evaluate(loaded, allowed_writers=config.allowed_writers)
    assert chain.outcome == "HOLD" and chain.codes == []
    assert {link.code for link in chain.holds} == {
        "PINNED_REF_UNAVAILABLE",
        "SCHEMA_UNAVAILABLE",
        "POLICY_SEMANTICS_UNVERIFIED",
    }


def test_every_kfm_negative_case_reaches_its_expected_verdict_or_says_why_not() -> None:
    config = _config().spine
    assert config is not None
    cases = json.loads((KFM_SAMPLE / SLICE / "cases.json").read_text())["cases"]
    results, findings = spine.replay_cases(spine.load(config), config)
    assert findings == []
    by_id = {r.case_id: r for r in results}
    assert sorted(by_id) == sorted(c["case_id"] for c in cases)
    for case in cases:
        result = by_id[case["case_id"]]
        if case["case_id"] == "schema_mismatch":
            # validation_report's schema is not in the sample: unverifiable, never PASS
            assert result.outcome == "HOLD" and result.status == "unverifiable"
            assert "schemas (SCHEMA_UNAVAILABLE)" in result.detail
            continue
        assert (result.outcome, result.codes) == (case["expected_outcome"], case["expected_codes"])
        assert result.status == "reproduced"


def test_schema_mismatch_reproduces_once_the_schema_is_there(tmp_path: Path) -> None:
    """The HOLD above is only the missing schema: supply one and the case FAILs as KFM says."""
    shutil.copytree(KFM_SAMPLE, tmp_path / "kfm")
    schema = tmp_path / "kfm/schemas/contracts/v1/data/validation_report.schema.json"
    schema.parent.mkdir(parents=True, exist_ok=True)
    schema.write_text(
        json.dumps(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "required": ["id", "version", "spec_hash"],
                "properties": {"version": {"type": "string"}},
            }
        )
    )
    config = _config(tmp_path / "kfm").spine
    assert config is not None
    results, _ = spine.replay_cases(spine.load(config), config)
    result = next(r for r in results if r.case_id == "schema_mismatch")
    assert (result.outcome, result.codes, result.status) == (
        "FAIL",
        ["SCHEMA_MISMATCH"],
        "reproduced",
    )


def test_a_tampered_artifact_fails_its_pin(tmp_path: Path) -> None:
    shutil.copytree(KFM_SAMPLE, tmp_path / "kfm")
    artifact = tmp_path / "kfm" / SLICE / "artifacts/run_receipt.json"
    artifact.write_text(artifact.read_text().replace("SUCCESS", "FAILURE"))
    config = _config(tmp_path / "kfm").spine
    assert config is not None
    loaded = spine.load(config)
    assert ("ARTIFACT_DIGEST_MISMATCH", "/artifacts/run_receipt") in {
        (f.code, f.field) for f in loaded.findings
    }
    assert spine.evaluate(loaded, allowed_writers=config.allowed_writers).outcome == "FAIL"


@pytest.mark.parametrize(
    "path", ["../outside.json", "/etc/passwd", "fixtures/./x.json", "a\\b.json", 7]
)
def test_unsafe_flow_paths_are_refused_unopened(tmp_path: Path, path: object) -> None:
    assert spine.repo_file(tmp_path, path) == (None, "unsafe")


def test_without_an_allowed_writer_the_writer_link_holds() -> None:
    config = _config().spine
    assert config is not None
    chain = spine.evaluate(spine.load(config))
    assert any(link.code == "WRITER_UNVERIFIED" for link in chain.holds)


def _sandbox(tmp_path: Path, clean: bool) -> provenance.ProvenanceScan:
    sections, _ = catalog_records.build(tmp_path, clean)
    target = tmp_path / "target.yaml"
    target.write_text(json.dumps({"name": "t", **sections}))
    return provenance.scan(provenance.ProvenanceConfig.from_target(load_target(target)))


def test_sandbox_chains(tmp_path: Path) -> None:
    faulty = {Path(e.file).stem: e for e in _sandbox(tmp_path / "f", False).entries}
    assert faulty["kfm-sbx-soils-2026"].codes == ["MYSTERY_DATASET"]
    assert faulty["kfm-sbx-wells-2026"].codes == ["PROVENANCE_REF_UNRESOLVED"]
    assert faulty["kfm-sbx-landcover-2026"].chain == {
        "prov": "../evidence/prov/landcover-2026.prov.json"
    }
    assert faulty["kfm-sbx-hydrology-2026"].outcome == "PASS"
    clean = _sandbox(tmp_path / "c", True)
    assert [e.outcome for e in clean.entries] == ["PASS"] * 4


def test_broken_links_in_the_chain(tmp_path: Path) -> None:
    sections, _ = catalog_records.build(tmp_path, clean=True)
    evidence = tmp_path / "catalog_records/provenance/evidence"
    (evidence / "sources/hydrology-2026.source.json").unlink()
    run = json.loads((evidence / "runs/soils-2026.run.json").read_text())
    run.update(source_descriptor_refs=[], inputs=[], outputs=[])
    (evidence / "runs/soils-2026.run.json").write_text(json.dumps(run))
    prov = json.loads((evidence / "prov/landcover-2026.prov.json").read_text())
    del prov["wasDerivedFrom"]
    (evidence / "prov/landcover-2026.prov.json").write_text(json.dumps(prov))
    target = tmp_path / "target.yaml"
    target.write_text(json.dumps({"name": "t", **sections}))
    scan = provenance.scan(provenance.ProvenanceConfig.from_target(load_target(target)))
    codes = {Path(e.file).stem: e.codes for e in scan.entries}
    assert codes["kfm-sbx-hydrology-2026"] == ["PROVENANCE_SOURCE_UNRESOLVED"]
    assert codes["kfm-sbx-soils-2026"] == ["PROVENANCE_CHAIN_BROKEN"]
    assert codes["kfm-sbx-landcover-2026"] == ["PROVENANCE_PROV_INCOMPLETE"]
