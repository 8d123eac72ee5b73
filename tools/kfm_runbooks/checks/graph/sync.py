"""Derive KFM's graph from its STAC catalog and provenance links (the pipeline's
catalogs -> graph step), and re-sync what a graph lost from that source of truth.

Walking the catalog from its root (child and item links, files inside the catalog
folder only), every record becomes a node and every hierarchy link a relationship:

    (:Catalog)-[:CHILD]->(:Collection)-[:PARENT]->(:Catalog)   (:Collection)-[:ROOT]->(:Catalog)
    (:Collection)-[:ITEM]->(:Item)-[:COLLECTION]->(:Collection)  (:Item)-[:ROOT]->(:Catalog)
    (:Item)-[:HAS_ASSET]->(:Asset)
    (:Item)-[:WAS_DERIVED_FROM]->(:Source)          from the item's `derived_from` link
    (:Item)-[:WAS_GENERATED_BY]->(:Activity)        from its `manifest_uri` (the run)
    (:Activity)-[:WAS_ASSOCIATED_WITH]->(:Agent)    from its `commit` (the code that ran)

An item's `parent` link repeats its `collection` link and is not loaded (KFM's closure
rules reciprocate `parent` with `child`, which items never have). Links to files that do
not exist are left out: broken catalog links are the catalog runbooks' finding.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import BLOCKING, Finding
from ..catalog.health import read_json_object
from ..common.paths import lexically_inside
from .db import GraphBackend, NodeRow, RelRow

STAC_RELS = {"child": "CHILD", "parent": "PARENT", "item": "ITEM", "collection": "COLLECTION"}
KIND_LABEL = {"Catalog": "Catalog", "Collection": "Collection", "Feature": "Item"}
TYPE_OF_LABEL = {"Catalog": "CATALOG", "Collection": "COLLECTION", "Item": "ITEM"}


@dataclass
class Derived:
    nodes: list[NodeRow] = field(default_factory=list)
    rels: list[RelRow] = field(default_factory=list)
    problems: list[Finding] = field(default_factory=list)


def _walk(root: Path, problems: list[Finding]) -> dict[Path, dict[str, Any]]:
    """Every record reachable from the root catalog through child/item links."""
    base = Path(os.path.normpath(root.parent))
    records: dict[Path, dict[str, Any]] = {}
    stack = [Path(os.path.normpath(root))]
    while stack:
        path = stack.pop()
        if path in records:
            continue
        record, code = read_json_object(path)
        if record is None:
            problems.append(
                Finding("GRAPH_SOURCE_UNREADABLE", path.name, "/", BLOCKING, code or "")
            )
            continue
        records[path] = record
        for link in record.get("links") or []:
            if not isinstance(link, dict) or link.get("rel") not in ("child", "item"):
                continue
            target = _resolve(path, link.get("href"), base)
            if target is not None and target.is_file():
                stack.append(target)
    return records


def _resolve(path: Path, href: Any, base: Path) -> Path | None:
    if not isinstance(href, str) or urllib.parse.urlsplit(href).scheme:
        return None
    target = Path(os.path.normpath(path.parent / urllib.parse.unquote(href)))
    return target if lexically_inside(target, base) else None


def _props(label: str, record: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {"id": record["id"]}
    if label == "Collection" and isinstance(record.get("license"), str):
        props["license"] = record["license"]
    if label == "Item":
        properties = record.get("properties") if isinstance(record.get("properties"), dict) else {}
        assert isinstance(properties, dict)
        if isinstance(record.get("collection"), str):
            props["collection"] = record["collection"]
        if isinstance(properties.get("datetime"), str):
            props["datetime"] = properties["datetime"]
    return props


def derive_from_catalog(root: Path) -> Derived:
    """The graph a STAC catalog (with KFM provenance links) means; sorted, deterministic."""
    out = Derived()
    records = _walk(root, out.problems)
    base = Path(os.path.normpath(root.parent))
    ids: dict[Path, tuple[str, str]] = {}  # path -> (id, label)
    for path, record in records.items():
        label = KIND_LABEL.get(str(record.get("type")))
        if label and isinstance(record.get("id"), str) and record["id"]:
            ids[path] = (record["id"], label)
    nodes: dict[tuple[str, str], NodeRow] = {}
    rels: set[tuple[str, str, str, str]] = set()  # (type, src, dst, target_type)

    def node(label: str, key: str, props: dict[str, Any]) -> None:
        nodes.setdefault((label, key), NodeRow(key, (label,), props))

    for path, (key, label) in ids.items():
        record = records[path]
        node(label, key, _props(label, record))
        for link in record.get("links") or []:
            if not isinstance(link, dict):
                continue
            rel, href = link.get("rel"), link.get("href")
            if rel in STAC_RELS or rel == "root":
                if label == "Item" and rel == "parent":
                    continue
                target = _resolve(path, href, base)
                if target not in ids:
                    continue
                target_id, target_label = ids[target]
                kind = "ROOT" if rel == "root" else STAC_RELS[str(rel)]
                rels.add((kind, key, target_id, TYPE_OF_LABEL[target_label]))
            elif label == "Item" and isinstance(href, str) and href:
                prov = {
                    "derived_from": ("Source", "WAS_DERIVED_FROM"),
                    "manifest_uri": ("Activity", "WAS_GENERATED_BY"),
                }.get(str(rel))
                if prov:
                    node(prov[0], href, {"id": href})
                    rels.add((prov[1], key, href, ""))
        if label == "Item":
            _item_extras(record, key, node, rels)
    out.nodes = sorted(nodes.values(), key=lambda n: (n.labels, n.key or ""))
    out.rels = [
        RelRow(kind, src, dst, {"target_type": tt} if tt else {})
        for kind, src, dst, tt in sorted(rels)
    ]
    return out


def _item_extras(record: dict[str, Any], key: str, node: Any, rels: set[Any]) -> None:
    links = [link for link in record.get("links") or [] if isinstance(link, dict)]
    commit = next((link.get("href") for link in links if link.get("rel") == "commit"), None)
    run = next((link.get("href") for link in links if link.get("rel") == "manifest_uri"), None)
    if isinstance(commit, str) and isinstance(run, str) and commit and run:
        node("Agent", commit, {"id": commit})
        rels.add(("WAS_ASSOCIATED_WITH", run, commit, ""))
    assets = record.get("assets") if isinstance(record.get("assets"), dict) else {}
    assert isinstance(assets, dict)
    for name in sorted(assets):
        asset = assets[name]
        if not isinstance(asset, dict):
            continue
        asset_id = f"{key}/{name}"
        props = {"id": asset_id, "item": key}
        for field_name, prop in (("href", "href"), ("file:checksum", "checksum")):
            if isinstance(asset.get(field_name), str):
                props[prop] = asset[field_name]
        if isinstance(asset.get("file:size"), int):
            props["size"] = asset["file:size"]
        node("Asset", asset_id, props)
        rels.add(("HAS_ASSET", key, asset_id, ""))


@dataclass
class SyncPlan:
    """What the graph lacks compared with its source (never what it has extra)."""

    nodes: list[NodeRow]
    rels: list[RelRow]

    @property
    def empty(self) -> bool:
        return not self.nodes and not self.rels

    def summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for n in self.nodes:
            out[f":{n.labels[0]}"] = out.get(f":{n.labels[0]}", 0) + 1
        for r in self.rels:
            out[f"[:{r.type}]"] = out.get(f"[:{r.type}]", 0) + 1
        return dict(sorted(out.items()))


def plan_resync(db: GraphBackend, source: Derived) -> SyncPlan:
    have_nodes = {(label, n.key) for n in db.nodes() for label in n.labels}
    have_rels = {(r.type, r.src, r.dst) for r in db.rels()}
    missing_nodes = [n for n in source.nodes if (n.labels[0], n.key) not in have_nodes]
    missing_rels = [r for r in source.rels if (r.type, r.src, r.dst) not in have_rels]
    return SyncPlan(missing_nodes, missing_rels)


def apply_resync(db: GraphBackend, plan: SyncPlan) -> dict[str, Any]:
    """Add what is missing (MERGE, so safe twice); returns exactly what was created."""
    created_nodes = db.merge_nodes(plan.nodes)
    created_rels = db.merge_rels(plan.rels)
    return {
        "nodes": sorted(created_nodes),
        "rels": [r.as_dict() for r in created_rels],
        "created": len(created_nodes) + len(created_rels),
    }


def undo_resync(db: GraphBackend, nodes: list[str], rels: list[dict[str, Any]]) -> dict[str, Any]:
    """Remove exactly what a re-sync created: its relationships, then its nodes."""
    deleted_rels = db.delete_rels(
        [RelRow(r["type"], r["src"], r["dst"], r.get("props") or {}) for r in rels]
    )
    deleted_nodes = db.delete_nodes(nodes)
    return {"deleted_rels": deleted_rels, "deleted_nodes": deleted_nodes}
