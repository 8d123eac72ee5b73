"""Sandbox part: KFM's graph, derived from the sandbox's STAC catalog and provenance.

Reads the catalog the `catalog` part wrote (parts build in name order) and loads it into
a SQLite graph (`graph/graph.sqlite`, see checks/graph/sqlite_backend.py) with the declared
constraints (`graph/schema.json`), a last known-good count snapshot
(`graph/snapshot.json`) and two verified backups (`graph/backups/`, LATEST -> the newer).

Seeded faults (faulty variant), one per graph runbook:
- orphans: item kfm-sbx-hydro-wells lost its ITEM / COLLECTION edges; a provenance
  :Activity of an aborted run was left without any edge
- constraint: the UNIQUE index kfm_asset_id was dropped
- counts: the hydrology :Asset nodes (and their HAS_ASSET edges) were deleted
- backup: the LATEST backup's bytes rotted after its manifest was written
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...checks.graph.backup import POINTER, take_backup
from ...checks.graph.db import NodeRow, RelRow, SchemaDecl
from ...checks.graph.sqlite_backend import SqliteGraph
from ...checks.graph.sync import Derived, derive_from_catalog

OLD_STAMP = "2026-05-31T00:00:00.000Z"
STAMP = "2026-06-01T00:00:00.000Z"
FAULT_STAMP = "2026-06-01T06:00:00.000Z"
ORPHAN_ITEM = "kfm-sbx-hydro-wells"
ORPHAN_COLLECTION = "kfm-sbx-hydrology"
STRAY_ACTIVITY = "urn:kfm:run:sandbox:aborted-20260601"
DROPPED = "kfm_asset_id"
LOST_ASSETS = "kfm-sbx-hydro-"  # every hydrology item's assets
NOT_YET_PUBLISHED = "kfm-sbx-landcover-2021"  # absent from the older backup
ROT_ID = b"kfm-sbx-hydro-gauges"
LABELS = ("Activity", "Agent", "Asset", "Catalog", "Collection", "Item", "Source")
SCHEMA: dict[str, Any] = {
    "profile": "kfm.graph-schema.v1",
    "constraints": [
        {"name": f"kfm_{label.lower()}_id", "label": label, "property": "id", "type": "UNIQUE"}
        for label in LABELS
    ],
    "indexes": [
        {"name": "kfm_item_datetime", "label": "Item", "property": "datetime", "type": "RANGE"}
    ],
}
TOLERANCE = {
    "default": {"abs": 1, "pct": 10},
    "labels": {"Catalog": {"abs": 0, "pct": 0}, "Collection": {"abs": 0, "pct": 0}},
}


def _json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _decls() -> list[SchemaDecl]:
    return [
        SchemaDecl(e["name"], e["type"], e["label"], e["property"])
        for key in ("constraints", "indexes")
        for e in SCHEMA[key]
    ]


def _load(path: Path, nodes: list[NodeRow], rels: list[RelRow], stamp: str) -> SqliteGraph:
    db = SqliteGraph.create(path)
    db.durable = False  # a sandbox being built: no fsync per transaction
    db.insert_nodes(nodes)
    db.insert_rels(rels)
    db.apply_schema(_decls())
    db.set_meta("last_write_at", stamp)
    db.compact()
    return db


def _older(derived: Derived) -> tuple[list[NodeRow], list[RelRow]]:
    """The graph a day earlier: one item not yet published."""
    own = ("HAS_ASSET", "WAS_GENERATED_BY")  # its asset and its pipeline run
    gone = {NOT_YET_PUBLISHED} | {
        str(r.dst) for r in derived.rels if r.src == NOT_YET_PUBLISHED and r.type in own
    }
    nodes = [n for n in derived.nodes if n.key not in gone]
    rels = [r for r in derived.rels if r.src not in gone and r.dst not in gone]
    return nodes, rels


def _seed_faults(db: SqliteGraph, backups: Path) -> None:
    db.delete_rels(
        [
            RelRow("ITEM", ORPHAN_COLLECTION, ORPHAN_ITEM),
            RelRow("COLLECTION", ORPHAN_ITEM, ORPHAN_COLLECTION),
        ]
    )
    db.merge_nodes([NodeRow(STRAY_ACTIVITY, ("Activity",), {"status": "aborted"})])
    db.drop_schema(DROPPED)
    lost = [r for r in db.rels() if r.type == "HAS_ASSET" and str(r.src).startswith(LOST_ASSETS)]
    db.delete_rels(lost)
    db.delete_nodes([str(r.dst) for r in lost])
    db.set_meta("last_write_at", FAULT_STAMP)
    db.compact()
    latest = backups / (backups / POINTER).read_text().strip()
    backup = backups / json.loads(latest.read_text())["file"]
    data = backup.read_bytes()
    at = data.index(ROT_ID)
    backup.write_bytes(data[:at] + b"kfm-sbx-hydro-gaugez" + data[at + len(ROT_ID) :])


def build(folder: Path, clean: bool) -> tuple[dict[str, Any], list[str]]:
    catalog = folder / "catalog" / "catalog.json"
    if not catalog.is_file():
        raise RuntimeError("sandbox part 'graph' derives from the 'catalog' part: build it first")
    derived = derive_from_catalog(catalog)
    base = folder / "graph"
    backups = base / "backups"
    backups.mkdir(parents=True)
    _json(base / "schema.json", SCHEMA)

    older = _load(base / ".older.sqlite", *_older(derived), OLD_STAMP)
    take_backup(older, backups, taken_at=OLD_STAMP)
    older.close()
    (base / ".older.sqlite").unlink()

    live = _load(base / "graph.sqlite", derived.nodes, derived.rels, STAMP)
    _json(
        base / "snapshot.json",
        {
            "profile": "kfm.graph-count-snapshot.v1",
            "taken_at": STAMP,
            "labels": live.label_counts(),
            "relationship_types": live.rel_type_counts(),
            "tolerance": TOLERANCE,
        },
    )
    take_backup(live, backups, taken_at=STAMP)
    if not clean:
        _seed_faults(live, backups)
    live.close()
    section = {
        "uri": "graph/graph.sqlite",
        "root_record": "kfm-sandbox",
        "schema": "graph/schema.json",
        "snapshot": "graph/snapshot.json",
        "backups": "graph/backups",
        "backup_max_lag_hours": 24,
        "source_catalog": "catalog/catalog.json",
    }
    faults = (
        []
        if clean
        else [
            f"graph: item {ORPHAN_ITEM} lost its ITEM/COLLECTION edges (GRAPH_ORPHAN_RECORD) and "
            f"activity {STRAY_ACTIVITY} has no edge (GRAPH_PROV_WITHOUT_EDGES)"
            " — RBK-graph-orphaned-nodes",
            f"graph: UNIQUE index {DROPPED} dropped (GRAPH_CONSTRAINT_MISSING)"
            " — RBK-graph-constraint-offline",
            "graph: the 3 hydrology :Asset nodes and their HAS_ASSET edges deleted "
            "(GRAPH_COUNT_DROP) — RBK-graph-count-anomaly",
            "graph: the LATEST backup's bytes rotted after its manifest was written "
            "(GRAPH_BACKUP_CHECKSUM_MISMATCH) — RBK-graph-backup-verification",
        ]
    )
    return {"graph": section}, faults
