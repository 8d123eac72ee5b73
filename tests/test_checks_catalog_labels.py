"""License / sensitivity-label checks: KFM's label fixtures, fail-closed levels, policy,
and reversible withholding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kfm_runbooks.checks.catalog import labels, withdraw
from kfm_runbooks.checks.catalog.schema import SchemaError
from kfm_runbooks.checks.common import matchers as expected_error
from kfm_runbooks.sandbox.parts import catalog_records
from kfm_runbooks.target import load_target

from .conftest import KFM_SAMPLE

FIXTURES = KFM_SAMPLE / "fixtures/contracts/v1/policy/sensitivity_label"


def _kfm() -> labels.LabelsScan:
    target = load_target(KFM_SAMPLE / "catalog_labels.target.yaml")
    return labels.scan(labels.LabelsConfig.from_target(target))


def test_kfm_label_fixtures_reproduce() -> None:
    docs = {Path(d.file).name: d for d in _kfm().label_docs}
    assert sorted(docs) == sorted(p.name for p in FIXTURES.rglob("*.json"))
    for name, doc in docs.items():
        if name.startswith("valid"):
            assert doc.outcome == "PASS" and doc.expected_outcome == "PASS", name
        else:
            matcher = (
                FIXTURES / "invalid" / name.replace(".json", ".expected_error.txt")
            ).read_text()
            assert doc.expected_error == matcher.strip()
            assert doc.outcome == "FAIL" and doc.matched, (name, doc.errors)
        assert doc.reproduced


@pytest.mark.parametrize(
    ("matcher", "errors", "matched"),
    [
        ("required", ["required: 'level' is a required property"], True),
        ("enum|pattern|date-time", ["enum: 'BAD' is not one of ['public']"], True),
        ("enum|pattern|date-time", ["format: 'x' is not a 'date-time'"], True),
        ("additional properties", ["required: 'level' is a required property"], False),
        ("", ["anything: at all"], False),
    ],
)
def test_expected_error_matcher(matcher: str, errors: list[str], matched: bool) -> None:
    parsed = expected_error.parse(matcher)
    schema_errors = [SchemaError("/", *line.split(": ", 1)) for line in errors]
    assert (parsed is not None and parsed.matched_by(schema_errors)) is matched


def test_kfm_policy_profile_is_a_placeholder_and_holds() -> None:
    scan = _kfm()
    assert not scan.policy.verified
    assert [f.code for f in scan.policy.findings] == ["POLICY_PROFILE_PLACEHOLDER"]
    assert scan.policy.publish == labels.DEFAULT_PUBLISH


def test_kfm_example_records_are_withheld_fail_closed() -> None:
    records = {Path(r.file).name: r for r in _kfm().records}
    stac = records["stac-item-example.json"]
    assert stac.codes == ["LICENSE_MISSING", "SENSITIVITY_LABEL_MISSING"]
    assert stac.effective == "restricted" and not stac.publishable
    dcat = records["dcat-distribution-example.json"]
    assert dcat.codes == ["LICENSE_PLACEHOLDER", "SENSITIVITY_LABEL_MISSING"]
    assert records["prov-o-graph-example.json"].publishable  # not a dataset record


def _policy(tmp_path: Path, text: str) -> labels.Policy:
    path = tmp_path / "profiles.yaml"
    path.write_text(text)
    return labels.load_policy(path, tmp_path)


def test_policy_profiles(tmp_path: Path) -> None:
    assert _policy(tmp_path, catalog_records.POLICY).verified
    unsafe = catalog_records.POLICY.replace(
        "restricted: {publish: false}", "restricted: {publish: true}"
    )
    opened = _policy(tmp_path, unsafe)
    assert not opened.verified and not opened.publishable("restricted")
    assert opened.findings[0].code == "POLICY_PROFILE_INVALID"
    assert _policy(tmp_path, "levels: [oops").findings[0].code == "POLICY_PROFILE_INVALID"
    assert labels.load_policy(None, tmp_path).findings[0].code == "POLICY_PROFILE_MISSING"


def _record_scan(tmp_path: Path, record: dict[str, object]) -> labels.LabelReport:
    """Scan a clean sandbox with one extra published record; its report."""
    sections, _ = catalog_records.build(tmp_path, clean=True)
    (tmp_path / "catalog_records/labels/published/items/probe.json").write_text(json.dumps(record))
    target = tmp_path / "target.yaml"
    target.write_text(json.dumps({"name": "t", **sections}))
    config = labels.LabelsConfig.from_target(load_target(target))
    scan = labels.scan(config)
    assert all(r.publishable for r in scan.records if not r.file.endswith("probe.json"))
    return next(r for r in scan.records if r.file.endswith("probe.json"))


def test_restricted_and_proprietary_records(tmp_path: Path) -> None:
    label = {"level": "restricted", "reason": "nest sites", "applied_at": "2026-01-01T00:00:00Z"}
    item = catalog_records._stac_item("probe", "c", properties={"license": "CC0-1.0"})
    item["properties"]["kfm:sensitivity_label"] = label
    report = _record_scan(tmp_path / "a", item)
    assert report.codes == ["RESTRICTED_RECORD_PUBLISHED"] and not report.publishable
    item["properties"]["kfm:sensitivity_label"] = {**label, "level": "public"}
    item["properties"]["license"] = "proprietary"
    report = _record_scan(tmp_path / "b", item)
    assert report.codes == ["LICENSE_LINK_MISSING"] and report.effective == "restricted"
    item["links"].append({"rel": "license", "href": "https://kfm.example/terms"})
    assert _record_scan(tmp_path / "c", item).publishable


def test_withhold_is_reversible_and_idempotent(tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "published").mkdir(parents=True)
    record = base / "published/r.json"
    record.write_bytes(b'{"id": "r"}\n')
    holding = withdraw.Holding(base, base / "withheld")
    first = withdraw.withdraw(
        holding, record, reason="LICENSE_MISSING", incident="INC-1", kind="withheld"
    )
    assert not record.exists() and withdraw.is_held(holding, "published/r.json")
    assert first["already"] is False
    assert withdraw.held(holding)[0]["path"] == "published/r.json"
    assert withdraw.restore(holding, "published/r.json")["restored"] is True
    assert (
        record.read_bytes() == b'{"id": "r"}\n'
        and not withdraw.slot(holding, "published/r.json").exists()
    )
    assert withdraw.restore(holding, "published/r.json")["restored"] is False  # twice: no-op
    withdraw.withdraw(holding, record, reason="x", incident="INC-1", kind="withheld")
    record.write_bytes(b"a different record published meanwhile")
    assert withdraw.restore(holding, "published/r.json")["restored"] is False  # never overwrites
    with pytest.raises(FileExistsError, match="different copy"):  # nor drops the new bytes
        withdraw.withdraw(holding, record, reason="x", incident="INC-1", kind="withheld")
    assert record.read_bytes() == b"a different record published meanwhile"
    record.write_bytes(b'{"id": "r"}\n')  # the same bytes again: withheld, nothing lost
    assert withdraw.withdraw(holding, record, reason="x", incident="INC-1", kind="withheld")[
        "already"
    ]
    assert not record.exists() and withdraw.is_held(holding, "published/r.json")
    other = base / "published__r.json"  # a name that flattens like published/r.json
    other.write_bytes(b"{}")
    withdraw.withdraw(holding, other, reason="x", incident="INC-1", kind="withheld")
    assert withdraw.slot(holding, "published__r.json") != withdraw.slot(holding, "published/r.json")
    assert withdraw.restore(holding, "published/r.json")["restored"] is True
    with pytest.raises(ValueError, match="safe relative"):
        withdraw.restore(holding, "../escape.json")


def test_the_registered_undo_restores_through_the_target(tmp_path: Path) -> None:
    from kfm_runbooks.checks import undo_op
    from kfm_runbooks.errors import TargetError

    sections, _ = catalog_records.build(tmp_path, clean=False)
    target_file = tmp_path / "target.yaml"
    target_file.write_text(json.dumps({"name": "t", **sections}))
    target = load_target(target_file)
    config = labels.LabelsConfig.from_target(target)
    record = config.base / "published/items/kfm-sbx-wells-2026.json"
    withdraw.withdraw(config.holding, record, reason="x", incident="INC-1", kind="withheld")
    undo = undo_op("catalog_withdraw.restore")
    result = undo(
        target,
        section="catalog_labels",
        key="withheld",
        path="published/items/kfm-sbx-wells-2026.json",
    )
    assert result["restored"] is True and record.is_file()
    with pytest.raises(TargetError):
        undo(target, section="catalog_labels", key="elsewhere", path="published/x.json")


def test_a_symlinked_record_is_withheld_and_restored_as_a_link(tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "published").mkdir(parents=True)
    link = base / "published/l.json"
    link.symlink_to(tmp_path / "elsewhere.json")  # dangling: never followed
    holding = withdraw.Holding(base, base / "withheld")
    withdraw.withdraw(
        holding, link, reason="INPUT_SYMLINK_DENIED", incident="INC-1", kind="withheld"
    )
    assert not link.is_symlink()
    assert withdraw.restore(holding, "published/l.json")["restored"] is True
    assert link.is_symlink() and link.readlink() == tmp_path / "elsewhere.json"


def test_without_the_label_schema_labels_hold() -> None:
    label = {"level": "public", "reason": "open", "applied_at": "2026-01-01T00:00:00Z"}
    found, errors = labels.label_findings(label, "r.json", "/kfm:sensitivity_label", None)
    assert [(f.code, f.severity) for f in found] == [("SCHEMA_UNAVAILABLE", "hold")]
    assert errors == []
