"""The catalog-health checks: KFM's verdicts, path safety, quarantine that really reverses."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from kfm_runbooks.checks.catalog import health as catalog
from kfm_runbooks.target import load_target

from . import hostile
from .conftest import KFM_SAMPLE

FIXTURE = KFM_SAMPLE / "fixtures/data/catalog_health"


def _scan_kfm(base: Path) -> dict[str, catalog.ItemReport]:
    config = catalog.CatalogConfig.from_target(load_target(base / "catalog_health.target.yaml"))
    return {Path(item.file).name: item for item in catalog.scan(config).items}


def test_kfm_catalog_health_verdicts_reproduce() -> None:
    outcomes = json.loads((FIXTURE / "expected_outcomes.json").read_text())
    findings = json.loads((FIXTURE / "expected_findings.json").read_text())
    reports = _scan_kfm(KFM_SAMPLE)
    assert set(reports) == set(outcomes)
    for name, report in reports.items():
        assert report.outcome == outcomes[name], name
        assert report.codes == sorted(findings[name]), name


def test_path_escape_is_never_opened(tmp_path: Path) -> None:
    """`../outside.bin` must never be read: make it a FIFO, which would block any open()."""
    shutil.copytree(KFM_SAMPLE, tmp_path / "kfm")
    outside = tmp_path / "kfm/fixtures/data/outside.bin"
    os.mkfifo(outside)
    result: dict[str, catalog.ItemReport] = {}
    worker = threading.Thread(
        target=lambda: result.update(_scan_kfm(tmp_path / "kfm")), daemon=True
    )
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "the scan blocked: it opened ../outside.bin"
    assert result["invalid_path_escape.json"].codes == ["CAT_ASSET_PATH_ESCAPE"]


def test_symlinked_asset_is_refused(tmp_path: Path) -> None:
    shutil.copytree(KFM_SAMPLE, tmp_path / "kfm")
    asset = tmp_path / "kfm/fixtures/data/catalog_health/assets/sample.bin"
    real = tmp_path / "real.bin"
    asset.rename(real)
    asset.symlink_to(real)
    reports = _scan_kfm(tmp_path / "kfm")
    assert reports["valid_local_item.json"].codes == ["CAT_ASSET_SYMLINK_DENIED"]


def test_sandbox_seeded_faults_are_found(sandbox: Path) -> None:
    config = catalog.CatalogConfig.from_target(load_target(sandbox))
    scan = catalog.scan(config)
    failing = {item.item_id: item.codes for item in scan.items if item.outcome != "PASS"}
    assert failing == {
        "kfm-sbx-landcover-2021": ["CAT_ASSET_DIGEST_MISMATCH"],
        "kfm-sbx-hydro-streams": ["CAT_ASSET_NOT_FOUND"],
    }
    assert [f.code for f in scan.link_findings] == ["CAT_LINK_BROKEN"]
    assert len(scan.items) == 6


def test_clean_sandbox_has_no_findings(clean_sandbox: Path) -> None:
    scan = catalog.scan(catalog.CatalogConfig.from_target(load_target(clean_sandbox)))
    assert scan.findings == []


def test_sandbox_is_deterministic(tmp_path: Path) -> None:
    from kfm_runbooks.sandbox import create_sandbox

    a, b = create_sandbox(tmp_path / "a").parent, create_sandbox(tmp_path / "b").parent

    def tree(folder: Path) -> dict[str, bytes]:
        return {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file()
        }

    assert tree(a) == tree(b)


def test_quarantine_and_restore_round_trip(sandbox: Path) -> None:
    config = catalog.CatalogConfig.from_target(load_target(sandbox))
    before = {p: p.read_bytes() for p in config.base.rglob("*.json")}
    item = config.base / "landcover/items/kfm-sbx-landcover-2021.json"
    meta = catalog.quarantine_item(config, item, reason="test", incident="INC-20260101-001")
    assert not item.exists() and catalog.is_quarantined(config, "kfm-sbx-landcover-2021")
    assert meta["parent_links"][0]["parent"] == "landcover/collection.json"
    ids = [i.item_id for i in catalog.scan(config).items]
    assert "kfm-sbx-landcover-2021" not in ids
    again = catalog.quarantine_item(config, item, reason="test", incident="INC-20260101-001")
    assert again["already"] is True
    restored = catalog.restore_item(config, "kfm-sbx-landcover-2021")
    assert restored["restored"] is True
    after = {p: p.read_bytes() for p in config.base.rglob("*.json")}
    assert {p: json.loads(b) for p, b in after.items()} == {
        p: json.loads(b) for p, b in before.items()
    }
    assert catalog.restore_item(config, "kfm-sbx-landcover-2021")["restored"] is False


def test_remove_and_restore_dangling_link(sandbox: Path) -> None:
    config = catalog.CatalogConfig.from_target(load_target(sandbox))
    [broken] = catalog.scan(config).broken_links
    removed = catalog.remove_broken_link(config, broken["parent"], broken["href"])
    assert removed["removed"] is True
    assert catalog.scan(config).link_findings == []
    assert catalog.remove_broken_link(config, broken["parent"], broken["href"])["removed"] is False
    assert catalog.restore_link(config, removed["parent"], removed["index"], removed["link"])
    assert [f.code for f in catalog.scan(config).link_findings] == ["CAT_LINK_BROKEN"]


@pytest.mark.parametrize(
    ("href", "code"),
    [
        ("../../../etc/passwd", "CAT_ASSET_PATH_ESCAPE"),
        ("/etc/passwd", "CAT_ASSET_PATH_ESCAPE"),
        ("assets/%2e%2e/%2e%2e/x", "CAT_ASSET_PATH_ESCAPE"),
        ("file:///etc/passwd", "CAT_ASSET_HREF_INVALID"),
        ("assets/none.bin", "CAT_ASSET_NOT_FOUND"),
    ],
)
def test_hostile_hrefs(tmp_path: Path, href: str, code: str) -> None:
    base = tmp_path / "cat"
    (base / "assets").mkdir(parents=True)
    config = catalog.CatalogConfig(
        base=base, root=None, items=(), asset_root=base, quarantine=base / "q"
    )
    path, found = catalog.resolve_local_asset(href, item_dir=base, config=config)
    assert path is None and found == code


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b'{"a": 1, "a": 2}', "CAT_JSON_DUPLICATE_KEY"),
        (b'{"a": NaN}', "CAT_JSON_NONFINITE_NUMBER"),
        (b"\xff\xfe{}", "CAT_JSON_NOT_UTF8"),
        (b"[" * 100_000 + b"]" * 100_000, "CAT_JSON_COMPLEXITY_LIMIT"),
        (b'{"a": ' * 100 + b"1" + b"}" * 100, "CAT_JSON_COMPLEXITY_LIMIT"),
        (b"[1, 2]", "CAT_ROOT_NOT_OBJECT"),
        (b"{", "CAT_JSON_INVALID"),
    ],
    ids=["duplicate", "nan", "not-utf8", "too-deep", "deep-object", "array", "torn"],
)
def test_hostile_json_is_a_finding_not_a_crash(tmp_path: Path, content: bytes, code: str) -> None:
    path = tmp_path / "item.json"
    path.write_bytes(content)
    assert catalog.read_json_object(path) == (None, code)


@pytest.mark.parametrize("kind", hostile.KINDS)
def test_quarantine_refuses_what_is_not_a_small_regular_file(sandbox: Path, kind: str) -> None:
    config = catalog.CatalogConfig.from_target(load_target(sandbox))
    item = config.base / "landcover/items/kfm-sbx-landcover-2021.json"
    honest = item.read_bytes()
    hostile.plant(item, kind, honest, catalog.MAX_RECORD_BYTES)
    with pytest.raises(OSError, match="refused"):
        catalog.quarantine_item(config, item, reason="test", incident="INC-20260101-001")
    assert os.path.lexists(item)  # nothing moved, nothing unlinked
    # the way back refuses a held copy swapped for a link / FIFO / giant just the same
    item.unlink()
    item.write_bytes(honest)
    catalog.quarantine_item(config, item, reason="test", incident="INC-20260101-001")
    held = config.quarantine / "kfm-sbx-landcover-2021/item.json"
    hostile.plant(held, kind, honest, catalog.MAX_RECORD_BYTES)
    with pytest.raises(OSError, match="refused"):
        catalog.restore_item(config, "kfm-sbx-landcover-2021")
    assert not item.exists()
