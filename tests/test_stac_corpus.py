"""The generalisation corpus: STAC catalogs written by a third-party writer (pystac), not by
KFM or by this project, each with the verdict it must get.

pystac's own layout (catalog.json, <collection>/collection.json, <collection>/<item>/<item>.json),
assets in a sibling `assets/` folder reached as `../../assets/x.bin` relative to the item,
File-extension multihash checksums written by `pystac.extensions.file`, licences on the
collection only. Clean catalogs PASS with their coverage counts asserted; every mutation
must FAIL or HOLD, never PASS.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pystac
import pytest
import yaml
from pystac.extensions.file import FileExtension

from kfm_runbooks.checks.catalog import digests
from kfm_runbooks.checks.catalog import health as catalog
from kfm_runbooks.errors import EXIT_BAD_INPUT, TargetError
from kfm_runbooks.target import load_target

from .conftest import CHECKSUM, Cli
from .helpers import coverage, run_json

WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SIZES = (100, 2048, 70_000)


def _multihash(data: bytes, algorithm: str = "sha256") -> str:
    if algorithm == "sha256":
        return "1220" + hashlib.sha256(data).hexdigest()
    if algorithm == "sha512":
        return "1340" + hashlib.sha512(data).hexdigest()
    if algorithm == "sha3_256":  # multihash code 0x16, not verifiable here
        return "1620" + hashlib.sha3_256(data).hexdigest()
    raise ValueError(algorithm)


def build(
    folder: Path,
    *,
    items: int = 3,
    algorithm: str = "sha256",
    remote: bool = False,
    version: str | None = None,
) -> Path:
    """A catalog written by pystac; returns the catalog.json path."""
    root = folder / "stac"
    (root / "assets").mkdir(parents=True)
    cat = pystac.Catalog(id="corpus", description="generalisation corpus")
    extent = pystac.Extent(
        pystac.SpatialExtent([[-98.0, 38.0, -97.0, 39.0]]), pystac.TemporalExtent([[WHEN, None]])
    )
    col = pystac.Collection(id="soils", description="soils", extent=extent, license="CC-BY-4.0")
    cat.add_child(col)
    for n in range(items):
        item = pystac.Item(
            id=f"soil-{n}",
            geometry={"type": "Point", "coordinates": [-97.5, 38.5]},
            bbox=[-97.5, 38.5, -97.5, 38.5],
            datetime=WHEN,
            properties={},
        )
        data = hashlib.sha256(str(n).encode()).digest() * (SIZES[n % 3] // 32 + 1)
        data = data[: SIZES[n % 3]]
        path = root / "assets" / f"soil-{n}.bin"
        path.write_bytes(data)
        href = f"https://data.example.org/soil-{n}.bin" if remote else str(path)
        asset = pystac.Asset(href=href, media_type="application/octet-stream", roles=["data"])
        item.add_asset("data", asset)
        file_ext = FileExtension.ext(asset, add_if_missing=True)
        file_ext.checksum = _multihash(data, algorithm)
        file_ext.size = len(data)
        col.add_item(item)
    cat.normalize_hrefs(str(root))
    cat.make_all_asset_hrefs_relative()
    cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    if version is not None:
        for path in root.rglob("*.json"):
            doc = json.loads(path.read_text())
            doc["stac_version"] = version
            path.write_text(json.dumps(doc, indent=2))
    return root / "catalog.json"


def _item_files(root: Path) -> list[Path]:
    return sorted(root.parent.glob("*/*/*.json"))


def _edit_item(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=2))


def _target(folder: Path, section: dict[str, Any], network: str = "deny") -> Path:
    path = folder / "target.yaml"
    path.write_text(yaml.safe_dump({"name": "corpus", "network": network, "catalog": section}))
    return path


def _scan(folder: Path, root: Path) -> catalog.CatalogScan:
    target = load_target(_target(folder, {"root": os.path.relpath(root, folder)}))
    return catalog.scan(catalog.CatalogConfig.from_target(target))


def _codes(scan: catalog.CatalogScan) -> set[str]:
    return {
        f.code
        for f in scan.findings
        if f.code in catalog.INTEGRITY_CODES | catalog.LINK_CODES or f.severity == "hold"
    }


# --- mutations and the verdict each must get --------------------------------------------


def test_clean_pystac_catalog_passes_with_full_coverage(tmp_path: Path) -> None:
    root = build(tmp_path)
    scan = _scan(tmp_path, root)
    assert [i.integrity for i in scan.items] == ["PASS"] * 3
    assert (scan.assets_examined, scan.assets_in_scope, scan.assets_verified) == (3, 3, 3)
    assert _codes(scan) == set()
    # KFM profile findings of a non-KFM catalog are findings of their own ...
    profile = {f.code for f in scan.findings}
    assert "CAT_ASSET_DESCRIPTOR_INVALID" in profile  # multihash, not sha256:; no title
    # ... but never about the licence, which the items inherit from their collection
    assert "CAT_STAC_LICENSE_MISSING" not in profile


def test_sha2_512_multihash_is_verified(tmp_path: Path) -> None:
    scan = _scan(tmp_path, build(tmp_path, algorithm="sha512"))
    assert (scan.assets_examined, scan.assets_verified, scan.assets_in_scope) == (3, 3, 3)


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        ("byte_flip", "CAT_ASSET_DIGEST_MISMATCH"),
        ("truncate", "CAT_ASSET_SIZE_MISMATCH"),
        ("delete", "CAT_ASSET_NOT_FOUND"),
        ("placeholder", "CAT_ASSET_CHECKSUM_PLACEHOLDER"),
        ("zero_digest", "CAT_ASSET_CHECKSUM_PLACEHOLDER"),
    ],
)
def test_tampered_assets_fail(tmp_path: Path, mutate: str, code: str) -> None:
    root = build(tmp_path)
    asset = root.parent / "assets/soil-1.bin"
    item = next(p for p in _item_files(root) if p.stem == "soil-1")
    if mutate == "byte_flip":
        data = bytearray(asset.read_bytes())
        data[len(data) // 2] ^= 0x01
        asset.write_bytes(bytes(data))
    elif mutate == "truncate":
        asset.write_bytes(asset.read_bytes()[:-1])
    elif mutate == "delete":
        asset.unlink()
    elif mutate == "placeholder":
        _edit_item(item, lambda d: d["assets"]["data"].update({"file:checksum": "REPLACE_SHA256"}))
    else:
        _edit_item(item, lambda d: d["assets"]["data"].update({"file:checksum": "1220" + "0" * 64}))
    scan = _scan(tmp_path, root)
    assert _codes(scan) == {code}
    assert {i.file.split("/")[-1]: i.integrity for i in scan.items}["soil-1.json"] == "FAIL"
    assert scan.assets_verified == 2


def test_dotdot_escape_past_the_root_is_never_opened(tmp_path: Path) -> None:
    """`../../../outside.bin` leaves the catalog's folder: PATH_ESCAPE, and the file (a FIFO,
    which would block any open()) is never touched."""
    root = build(tmp_path)
    os.mkfifo(tmp_path / "outside.bin")
    item = _item_files(root)[0]
    _edit_item(item, lambda d: d["assets"]["data"].update({"href": "../../../outside.bin"}))
    result: dict[str, catalog.CatalogScan] = {}
    worker = threading.Thread(target=lambda: result.update(s=_scan(tmp_path, root)), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the scan opened the escaping href"
    assert _codes(result["s"]) == {"CAT_ASSET_PATH_ESCAPE"}


def test_remote_only_catalog_holds(tmp_path: Path) -> None:
    scan = _scan(tmp_path, build(tmp_path, remote=True))
    assert _codes(scan) == {"CAT_ASSET_REMOTE_UNVERIFIED"}
    assert [i.integrity for i in scan.items] == ["HOLD"] * 3
    assert (scan.assets_examined, scan.assets_in_scope) == (0, 3)


@pytest.mark.parametrize("href", ["s3://bucket/soil.bin", "http://data.example.org/soil.bin"])
def test_other_remote_schemes_hold_with_or_without_checksum(tmp_path: Path, href: str) -> None:
    root = build(tmp_path, items=1)
    [item] = _item_files(root)
    _edit_item(item, lambda d: d["assets"]["data"].update({"href": href}))
    _edit_item(item, lambda d: d["assets"]["data"].pop("file:checksum"))
    scan = _scan(tmp_path, root)
    assert _codes(scan) == {"CAT_ASSET_REMOTE_UNVERIFIED"} and scan.items[0].integrity == "HOLD"


def test_unknown_digest_algorithm_holds_and_names_it(tmp_path: Path) -> None:
    scan = _scan(tmp_path, build(tmp_path, algorithm="sha3_256"))
    held = [f for f in scan.findings if f.code == "CAT_ASSET_DIGEST_UNSUPPORTED"]
    assert len(held) == 3 and all("sha3-256" in f.message for f in held)
    assert all(f.severity == "hold" for f in held) and scan.assets_examined == 0


@pytest.mark.parametrize(
    ("version", "judged"),
    [
        ("1.1.0-beta.1", True),
        ("1.0.0-rc.2", True),
        ("1.0.0", True),
        ("2.0.0", False),
        ("0.9.0", False),
    ],
)
def test_stac_versions(tmp_path: Path, version: str, judged: bool) -> None:
    scan = _scan(tmp_path, build(tmp_path, items=1, version=version))
    [item] = scan.items
    unknown = [f for f in item.findings if f.code == "CAT_STAC_VERSION_UNKNOWN"]
    assert bool(unknown) is not judged
    assert item.assets_verified == 1  # the bytes are checked whatever the version ...
    # ... but an item of a version whose rules are unknown here is not judged: HOLD
    assert item.integrity == ("PASS" if judged else "HOLD")
    if not judged:
        assert unknown[0].severity == "hold"


def test_empty_catalog_has_nothing_in_scope(tmp_path: Path) -> None:
    scan = _scan(tmp_path, build(tmp_path, items=0))
    assert scan.items == [] and scan.assets_in_scope == 0


def test_root_that_is_not_a_catalog_is_a_finding(tmp_path: Path) -> None:
    root = build(tmp_path, items=1)
    scan = _scan(tmp_path, _item_files(root)[0])
    assert {f.code for f in scan.link_findings} == {"CAT_ROOT_NOT_CATALOG"} and scan.items == []


def test_typo_in_the_root_is_bad_input(tmp_path: Path) -> None:
    build(tmp_path)
    with pytest.raises(TargetError, match=r"'catalog.root' = 'stac/catalgo.json' does not exist"):
        load_target(_target(tmp_path, {"root": "stac/catalgo.json"}))


def test_item_folders_scan_every_record_type_and_list_what_they_skip(tmp_path: Path) -> None:
    root = build(tmp_path, items=2)
    items = _item_files(root)
    items[1].rename(items[1].with_suffix(".geojson"))
    (root.parent / "soils/README.md").write_text("notes")
    target = load_target(_target(tmp_path, {"items": ["stac/soils"], "data_root": "stac"}))
    scan = catalog.scan(catalog.CatalogConfig.from_target(target))
    assert sorted(Path(i.file).suffix for i in scan.items) == [".geojson", ".json"]
    assert (scan.assets_examined, scan.assets_in_scope) == (2, 2)
    assert {(s["file"], s["reason"].split(",")[0]) for s in scan.skipped} == {
        ("soils/README.md", "not a .json/.jsonld/.geojson record"),
        ("soils/collection.json", "a STAC Collection"),
    }
    # without data_root, the boundary is the items folder: ../../assets leaves it
    bare = catalog.scan(
        catalog.CatalogConfig.from_target(load_target(_target(tmp_path, {"items": ["stac/soils"]})))
    )
    assert {f.code for f in bare.findings} >= {"CAT_ASSET_PATH_ESCAPE"}


def test_multihash_parsing() -> None:
    data = b"kfm"
    assert digests.parse(_multihash(data)).hexdigest == hashlib.sha256(data).hexdigest()
    assert digests.parse("sha256:" + "ab" * 32).algorithm == "sha2-256"
    assert digests.parse("1114" + "00" * 20).status == digests.UNSUPPORTED  # sha1, named
    assert digests.parse("1114" + "11" * 20).algorithm == "sha1"
    assert digests.parse("1220" + "ab" * 31).status == digests.INVALID  # too short
    assert digests.parse("<fill_me>").status == digests.PLACEHOLDER
    assert digests.parse("sha256:" + "0" * 64).status == digests.PLACEHOLDER


# --- the runbook on the corpus ---------------------------------------------------------


@pytest.mark.slow
def test_the_checksum_runbook_on_pystac_catalogs(
    cli: Cli, incident: tuple[str, Path], tmp_path: Path
) -> None:
    incident_id, _ = incident
    clean = build(tmp_path / "clean")
    out = run_json(
        cli, CHECKSUM, incident_id, _target(tmp_path / "clean", {"root": "stac/catalog.json"})
    )
    assert out["_exit"] == 0 and out["outcome"] == "passed", out["statuses"]
    assert coverage(out, "asset-digests") == (3, 3)
    assert coverage(out, "asset-and-catalog-links") == (3, 3)
    assert coverage(out, "table-item_verdicts") == (3, 3)

    asset = clean.parent / "assets/soil-0.bin"
    asset.write_bytes(b"tampered" + asset.read_bytes()[8:])
    flipped = run_json(cli, CHECKSUM, incident_id, tmp_path / "clean/target.yaml")
    assert flipped["_exit"] == 1 and flipped["statuses"]["asset-digests"] == "FAIL"

    build(tmp_path / "remote", remote=True)
    remote = run_json(
        cli, CHECKSUM, incident_id, _target(tmp_path / "remote", {"root": "stac/catalog.json"})
    )
    assert remote["outcome"] == "hold" and remote["statuses"]["asset-digests"] == "HOLD"
    assert coverage(remote, "asset-digests") == (0, 3)

    build(tmp_path / "empty", items=0)
    empty = run_json(
        cli, CHECKSUM, incident_id, _target(tmp_path / "empty", {"root": "stac/catalog.json"})
    )
    assert empty["outcome"] != "passed" and set(empty["statuses"].values()) == {"HOLD"}

    typo = run_json(
        cli, CHECKSUM, incident_id, _target(tmp_path / "empty", {"root": "stac/catalgo.json"})
    )
    assert typo["_exit"] == EXIT_BAD_INPUT and "'catalog.root'" in typo["_stderr"]
