"""Catalog-record validation checks: KFM's fixture verdicts, JCS, PROV/DCAT/STAC rules,
hostile input that must become findings, and the light in-kernel import."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kfm_runbooks.checks.catalog import json_docs as catalog_json
from kfm_runbooks.checks.catalog import prov as catalog_prov
from kfm_runbooks.checks.catalog import stac as catalog_stac
from kfm_runbooks.checks.catalog import validation
from kfm_runbooks.errors import TargetError
from kfm_runbooks.sandbox.parts import catalog_records
from kfm_runbooks.target import load_target

from .conftest import KFM_SAMPLE

MODULES = (
    "catalog.json_docs",
    "catalog.schema",
    "catalog.stac",
    "catalog.prov",
    "catalog.validation",
    "catalog.labels",
    "catalog.provenance",
    "catalog.trust_spine",
    "catalog.withdraw",
)


def test_importing_the_checks_stays_light() -> None:
    imports = ", ".join(f"kfm_runbooks.checks.{name}" for name in MODULES)
    code = (
        f"import sys, {imports}\n"
        "heavy = [m for m in ('scrapbook', 'papermill', 'pandas', 'pydantic', 'nbformat', "
        "'jupyter_client', 'jsonschema', 'prov') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _kfm_scan(base: Path = KFM_SAMPLE) -> validation.ValidationScan:
    target = load_target(base / "catalog_validation.target.yaml")
    return validation.scan(validation.ValidationConfig.from_target(target))


def test_every_kfm_fixture_manifest_verdict_reproduces() -> None:
    scan = _kfm_scan()
    expected = scan.expectations()
    assert len(expected) == 20  # 9 STAC profile + 11 trust-extension fixtures
    for report in expected:
        assert report.reproduced, (report.file, report.outcome, report.codes, report.expected)
    assert scan.findings == []


def test_trust_extension_fields_match_the_manifest_exactly() -> None:
    manifest = KFM_SAMPLE / "fixtures/data/catalog_trust_extension/expected_findings_manifest.json"
    cases = json.loads(manifest.read_text())["cases"]
    reports = {r.file.split("catalog_trust_extension/")[-1]: r for r in _kfm_scan().reports}
    for case in cases:
        report = reports[case["path"]]
        assert report.outcome == case["expected_outcome"]
        pairs = sorted({(f.code, f.field) for f in report.findings})
        assert pairs == sorted((f["code"], f["field"]) for f in case["expected_findings"])


def test_kfm_illustrative_examples_fail_for_their_placeholders() -> None:
    reports = {Path(r.file).name: r for r in _kfm_scan().reports}
    assert reports["stac-item-example.json"].codes == [
        "RECORD_PLACEHOLDER_VALUE",
        "STAC_FIELD_MISSING",
    ]
    assert reports["dcat-distribution-example.json"].codes == ["RECORD_PLACEHOLDER_VALUE"]
    assert reports["prov-o-graph-example.json"].codes == [
        "PROV_REF_UNDECLARED",
        "RECORD_PLACEHOLDER_VALUE",
    ]


def test_a_changed_fixture_no_longer_reproduces(tmp_path: Path) -> None:
    """The comparison can fail: make a valid fixture invalid and it must be reported."""
    shutil.copytree(KFM_SAMPLE, tmp_path / "kfm")
    path = tmp_path / "kfm/fixtures/contracts/v1/stac/kfm-profile-v1/valid"
    item = path / "valid_receipt_bound_candidate.json"
    doc = json.loads(item.read_text())
    doc["properties"]["kfm:reason_codes"] = ["Z_CODE", "A_CODE"]
    item.write_text(json.dumps(doc))
    report = next(r for r in _kfm_scan(tmp_path / "kfm").reports if r.file.endswith(item.name))
    assert report.codes == ["REASON_CODES_NOT_CANONICAL", "SPEC_HASH_MISMATCH"]
    assert report.reproduced is False


# --- hostile input ----------------------------------------------------------------------


def _config(tmp_path: Path, records: list[str], **schemas: str) -> validation.ValidationConfig:
    target = tmp_path / "t.target.yaml"
    target.write_text(
        json.dumps(
            {
                "name": "t",
                "catalog_validation": {
                    "base": "base",
                    "records": records,
                    "schemas": schemas,
                },
            }
        )
    )
    return validation.ValidationConfig.from_target(load_target(target))


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b'{"a": 1, "a": 2}', "JSON_DUPLICATE_KEY"),
        (b'{"a": NaN}', "JSON_NONFINITE_NUMBER"),
        (b"{not json", "JSON_INVALID"),
        (b"\xff\xfe{}", "JSON_NOT_UTF8"),
        (b"[1, 2]", "ROOT_NOT_OBJECT"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "JSON_COMPLEXITY_LIMIT"),
    ],
)
def test_malformed_records_are_findings(tmp_path: Path, content: bytes, code: str) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base/bad.json").write_bytes(content)
    [report] = validation.scan(_config(tmp_path, ["base"])).reports
    assert report.codes == [code] and report.outcome == "ERROR"


def test_paths_outside_the_base_are_never_opened(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "outside").mkdir()
    os.mkfifo(tmp_path / "outside/trap.json")  # opening it would block
    (tmp_path / "base/link.json").symlink_to(tmp_path / "outside/trap.json")
    result: list[validation.ValidationScan] = []
    config = _config(tmp_path, ["base", "outside"])
    worker = threading.Thread(target=lambda: result.append(validation.scan(config)), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "the scan opened a file outside its base"
    [scan] = result
    assert [f.code for f in scan.findings] == ["PATH_ESCAPE"]
    assert [r.codes for r in scan.reports] == [["INPUT_SYMLINK_DENIED"]]


def test_missing_schema_holds_instead_of_passing(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    item = (
        KFM_SAMPLE
        / "fixtures/contracts/v1/stac/kfm-profile-v1/valid/valid_proof_bound_cataloged.json"
    )
    shutil.copy(item, tmp_path / "base/item.json")
    (tmp_path / "broken.schema.json").write_text("{not json")
    [report] = validation.scan(
        _config(tmp_path, ["base"], kfm_stac_profile="broken.schema.json")
    ).reports
    assert report.codes == ["SCHEMA_UNAVAILABLE"] and report.outcome == "HOLD"
    # a schema path that does not exist is a description error, not a verdict
    with pytest.raises(TargetError, match=r"'catalog_validation.schemas.kfm_stac_profile'"):
        _config(tmp_path, ["base"], kfm_stac_profile="nowhere.schema.json")


def test_unknown_records_hold() -> None:
    kind, found = validation.validate_record({"hello": "world"}, "x.json", {})
    assert kind == "unknown" and [f.code for f in found] == ["RECORD_TYPE_UNKNOWN"]
    assert found[0].severity == "hold"


# --- STAC / PROV / DCAT rules ---------------------------------------------------------


def test_stac_core_rules() -> None:
    item = catalog_records._stac_item("x", "c")
    assert catalog_stac.stac_core_findings(item, "x") == []
    del item["geometry"]
    item["properties"]["datetime"] = "yesterday"
    item["stac_version"] = "0.9.0"
    codes = sorted(f.code for f in catalog_stac.stac_core_findings(item, "x"))
    assert codes == ["STAC_FIELD_INVALID", "STAC_FIELD_MISSING", "STAC_VERSION_UNSUPPORTED"]
    collection = catalog_records._collection("c")
    del collection["license"]
    assert [f.field for f in catalog_stac.stac_core_findings(collection, "c")] == ["/license"]


def test_prov_json_closure_and_times() -> None:
    doc = catalog_records._prov_doc("out", "src", "run")
    assert catalog_prov.prov_json_findings(doc, "p") == []
    broken = catalog_records._prov_doc("out", "src", "run", used_from="elsewhere")
    broken["activity"]["kfm:run/run"]["prov:endTime"] = "2020-01-01T00:00:00Z"
    broken["entity"]["zz:stray"] = {}
    found = {(f.code, f.field) for f in catalog_prov.prov_json_findings(broken, "p")}
    assert found == {
        ("PROV_REF_UNDECLARED", "/wasDerivedFrom/_:d1/prov:usedEntity"),
        ("PROV_TIME_INVALID", "/activity/kfm:run/run"),
        ("PROV_PREFIX_UNDECLARED", "/entity/zz:stray"),
        ("PROV_JSON_INVALID", "/"),  # the prov library refuses the undeclared prefix too
    }


def test_prov_json_the_library_cannot_read_is_a_finding() -> None:
    found = catalog_prov.prov_json_findings({"entity": [1, 2]}, "p")
    assert [f.code for f in found] == ["PROV_JSON_INVALID"]


def test_dcat_rules() -> None:
    dist = catalog_records._dcat("d")
    assert catalog_prov.dcat_findings(dist, "d") == []
    del dist["dcat:downloadURL"]
    dist["dcat:accessURL"] = "relative/path"
    del dist["@context"]
    codes = sorted(f.code for f in catalog_prov.dcat_findings(dist, "d"))
    assert codes == ["DCAT_CONTEXT_MISSING", "DCAT_FIELD_INVALID"]


def test_sandbox_part_is_deterministic(tmp_path: Path) -> None:
    for name, clean in (("a", False), ("b", False), ("c", True)):
        catalog_records.build(tmp_path / name, clean)

    def tree(root: Path) -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
        }

    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    assert tree(tmp_path / "a") != tree(tmp_path / "c")


def test_jsonld_records_are_judged_and_other_files_listed_as_skipped(tmp_path: Path) -> None:
    """DCAT in `.jsonld` (and GeoJSON) records in a folder are judged, never silently
    ignored; every file a scan does not judge is listed with the reason."""
    (tmp_path / "base/records").mkdir(parents=True)
    dcat = catalog_records._dcat("kfm-dist", **{"dct:license": "CC-BY-4.0"})
    (tmp_path / "base/records/dist.jsonld").write_text(json.dumps(dcat))
    (tmp_path / "base/records/notes.md").write_text("not a record")
    result = validation.scan(_config(tmp_path, ["base/records"]))
    assert [(r.file, r.kind) for r in result.reports] == [("records/dist.jsonld", "dcat")]
    assert result.skipped == [
        {"file": "records/notes.md", "reason": "not a .json/.jsonld/.geojson record (.md)"}
    ]


@pytest.mark.parametrize("stub", ["REPLACE_SHA256", "<fill_me>", "a placeholder value"])
def test_kfm_placeholder_stubs_are_found(stub: str) -> None:
    assert catalog_json.placeholders({"a": {"b": stub}}) == ["/a/b"]
