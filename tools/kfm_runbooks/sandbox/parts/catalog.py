"""Sandbox part: a STAC catalog (2 collections, 6 items, local assets with checksums).

Seeded faults (faulty variant):
- landcover-2021: its asset's bytes changed after publication (same size): checksum mismatch
- hydro-streams: its asset file is gone: broken asset link
- hydrology collection: an item link to a file that does not exist: broken catalog link
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

STAC_VERSION = "1.0.0"
STAMP = "2026-06-01T00:00:00Z"
COMMIT = "git:5d1c3f0e9a7b2c4d6e8f0a1b3c5d7e9f1a2b4c6d"

# (collection, item id, asset file, size, remote embargoed?)
ITEMS = [
    ("landcover", "kfm-sbx-landcover-2019", "landcover-2019.bin", 4096, False),
    ("landcover", "kfm-sbx-landcover-2020", "landcover-2020.bin", 4096, False),
    ("landcover", "kfm-sbx-landcover-2021", "landcover-2021.bin", 4096, False),
    ("hydrology", "kfm-sbx-hydro-streams", "streams.bin", 2048, False),
    ("hydrology", "kfm-sbx-hydro-wells", "wells.bin", 1024, False),
    ("hydrology", "kfm-sbx-hydro-gauges", "gauges.bin", 512, True),
]
TAMPERED = "kfm-sbx-landcover-2021"
MISSING_ASSET = "kfm-sbx-hydro-streams"
DANGLING_ITEM = "kfm-sbx-hydro-springs"


def asset_bytes(name: str, size: int) -> bytes:
    """Deterministic pseudo-data: a sha256 stream seeded by the file name."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{name}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def _write(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _item(collection: str, item_id: str, asset: str, size: int, remote: bool) -> dict[str, Any]:
    data = asset_bytes(asset, size)
    digest = hashlib.sha256(data).hexdigest()
    links = [
        {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
        {"rel": "parent", "href": "../collection.json", "type": "application/json"},
        {"rel": "collection", "href": "../collection.json", "type": "application/json"},
        {"rel": "derived_from", "href": f"urn:kfm:source:sandbox:{collection}"},
        {"rel": "checksum", "href": f"sha256:{digest}"},
        {"rel": "commit", "href": COMMIT},
        {"rel": "manifest_uri", "href": f"urn:kfm:manifest:sandbox:{item_id}"},
    ]
    roles = ["data"]
    href = f"../assets/{asset}"
    if remote:
        roles.append("embargoed")
        href = f"https://data.kfm.example/embargoed/{asset}"
        links.append({"rel": "via", "href": f"urn:kfm:access-request:{item_id}"})
    west = -102.05 + 0.5 * len(item_id) % 5
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "id": item_id,
        "collection": f"kfm-sbx-{collection}",
        "geometry": {
            "type": "Polygon",
            "coordinates": [
                [[west, 37.0], [west + 1, 37.0], [west + 1, 38.0], [west, 38.0], [west, 37.0]]
            ],
        },
        "bbox": [west, 37.0, west + 1, 38.0],
        "properties": {"datetime": STAMP, "created": STAMP, "updated": STAMP},
        "license": "CC-BY-4.0",
        "providers": [{"name": "KFM sandbox", "roles": ["producer", "licensor"]}],
        "links": links,
        "assets": {
            "data": {
                "href": href,
                "type": "application/octet-stream",
                "title": f"{item_id} data",
                "roles": roles,
                "file:checksum": f"sha256:{digest}",
                "file:size": size,
            }
        },
    }


def build(folder: Path, clean: bool) -> tuple[dict[str, Any], list[str]]:
    base = folder / "catalog"
    collections: dict[str, list[str]] = {}
    for collection, item_id, asset, size, remote in ITEMS:
        collections.setdefault(collection, []).append(item_id)
        _write(
            base / collection / "items" / f"{item_id}.json",
            _item(collection, item_id, asset, size, remote),
        )
        if remote:
            continue
        if not clean and item_id == MISSING_ASSET:
            continue
        data = asset_bytes(asset, size)
        if not clean and item_id == TAMPERED:
            data = data[:100] + bytes(b ^ 0xFF for b in data[100:132]) + data[132:]
        (base / collection / "assets").mkdir(parents=True, exist_ok=True)
        (base / collection / "assets" / asset).write_bytes(data)
    if not clean:
        collections["hydrology"].append(DANGLING_ITEM)
    _write(
        base / "catalog.json",
        {
            "type": "Catalog",
            "stac_version": STAC_VERSION,
            "id": "kfm-sandbox",
            "description": "KFM sandbox catalog (deterministic, with seeded faults)",
            "links": [{"rel": "root", "href": "./catalog.json", "type": "application/json"}]
            + [
                {"rel": "child", "href": f"./{name}/collection.json", "type": "application/json"}
                for name in collections
            ],
        },
    )
    for name, item_ids in collections.items():
        _write(
            base / name / "collection.json",
            {
                "type": "Collection",
                "stac_version": STAC_VERSION,
                "id": f"kfm-sbx-{name}",
                "description": f"Sandbox {name} collection",
                "license": "CC-BY-4.0",
                "extent": {
                    "spatial": {"bbox": [[-102.05, 37.0, -94.6, 40.0]]},
                    "temporal": {"interval": [[STAMP, None]]},
                },
                "links": [
                    {"rel": "root", "href": "../catalog.json", "type": "application/json"},
                    {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
                ]
                + [
                    {
                        "rel": "item",
                        "href": f"./items/{item_id}.json",
                        "type": "application/geo+json",
                    }
                    for item_id in item_ids
                ],
            },
        )
    section = {"root": "catalog/catalog.json", "quarantine": "catalog/quarantine"}
    faults = (
        []
        if clean
        else [
            f"catalog: {TAMPERED} asset bytes changed after publication (CAT_ASSET_DIGEST_MISMATCH)"
            " — RBK-catalog-checksum-mismatch",
            f"catalog: {MISSING_ASSET} asset file deleted (CAT_ASSET_NOT_FOUND)"
            " — RBK-catalog-checksum-mismatch",
            f"catalog: hydrology collection links missing item {DANGLING_ITEM} (CAT_LINK_BROKEN)"
            " — RBK-catalog-checksum-mismatch",
        ]
    )
    return {"catalog": section}, faults
