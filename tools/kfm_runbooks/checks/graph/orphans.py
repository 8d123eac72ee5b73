"""Orphaned nodes: records unreachable from the root, provenance nodes without edges.

The scan applies KFM's link-closure rules (graph_closure) to the live graph and lists
provenance nodes (`:Activity`, `:Agent`, `:Source`) that have no relationship at all.
Containment labels orphans `:Quarantined` (KFM's API and Focus Mode leave quarantined
nodes out; the scan does too); recovery re-links a quarantined orphan item to the
collection its own `collection` property names and lifts its quarantine. Both are
reversible (graph.unquarantine / graph.unlink) and idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import BLOCKING, INFO, Finding
from .closure import RecordGraph, assess, assessment_findings, record_graph
from .db import PROV_LABELS, QUARANTINE_LABEL, GraphBackend, NodeRow, RelRow

NO_EXCLUSION = "_"  # a label no node has: include quarantined nodes


def find_root(graph: RecordGraph, configured: str | None) -> tuple[str | None, list[Finding]]:
    """The root Catalog: the configured id, else the only Catalog record."""
    catalogs = sorted(k for k, kind in graph.records.items() if kind == "CATALOG")
    if configured:
        if graph.records.get(configured) == "CATALOG":
            return configured, []
        why = "is not a Catalog record in the graph"
        return None, [Finding("GRAPH_ROOT_INVALID", configured, "/", BLOCKING, why)]
    if len(catalogs) == 1:
        return catalogs[0], []
    why = f"{len(catalogs)} Catalog records: set graph.root_record in the target"
    return None, [Finding("GRAPH_ROOT_INVALID", "(root)", "/", BLOCKING, why)]


@dataclass
class OrphanScan:
    root: str | None
    graph: RecordGraph
    assessment: dict[str, Any]
    isolated: list[NodeRow]
    quarantined: list[NodeRow]
    findings: list[Finding] = field(default_factory=list)
    label_totals: dict[str, int] = field(default_factory=dict)

    @property
    def orphan_ids(self) -> list[str]:
        return list(self.assessment["orphan_record_ids"])

    @property
    def isolated_ids(self) -> list[str]:
        return [n.key for n in self.isolated if n.key is not None]

    def with_codes(self, *codes: str) -> list[Finding]:
        return [f for f in self.findings if f.code in codes]

    def per_label(self) -> dict[str, dict[str, int]]:
        """For the plot: per label, connected / orphaned / quarantined node counts."""
        bad = set(self.orphan_ids) | set(self.isolated_ids)
        out: dict[str, dict[str, int]] = {}
        for label, total in sorted(self.label_totals.items()):
            if label == QUARANTINE_LABEL:
                continue
            out[label] = {"connected": total, "orphaned": 0, "quarantined": 0}
        for key, kind in self.graph.records.items():
            label = kind.title()
            if key in bad and label in out:
                out[label]["orphaned"] += 1
                out[label]["connected"] -= 1
        for node in self.isolated:
            for label in node.labels:
                if label in out:
                    out[label]["orphaned"] += 1
                    out[label]["connected"] -= 1
        for node in self.quarantined:
            for label in node.labels:
                if label in out:
                    out[label]["quarantined"] += 1
                    out[label]["connected"] -= 1
        return out


def scan(db: GraphBackend, root_record: str | None = None) -> OrphanScan:
    """Read-only: closure of the record graph plus provenance nodes without edges."""
    nodes = db.nodes()
    graph = record_graph(nodes, db.rels())
    root, findings = find_root(graph, root_record)
    assessment = assess(graph, root)
    findings += assessment_findings(assessment, graph)
    isolated = [n for n in db.isolated(PROV_LABELS) if QUARANTINE_LABEL not in n.labels]
    for node in isolated:
        labels = ":".join(node.labels)
        findings.append(
            Finding(
                "GRAPH_PROV_WITHOUT_EDGES",
                node.key or "(no id)",
                "/",
                BLOCKING,
                f":{labels} node has no relationship at all",
            )
        )
    quarantined = [n for n in nodes if QUARANTINE_LABEL in n.labels]
    for node in quarantined:
        findings.append(
            Finding("GRAPH_NODE_QUARANTINED", node.key or "(no id)", "/", INFO, "contained")
        )
    totals: dict[str, int] = {}
    for node in nodes:
        for label in node.labels:
            totals[label] = totals.get(label, 0) + 1
    return OrphanScan(root, graph, assessment, isolated, quarantined, sorted(findings), totals)


def quarantine(db: GraphBackend, keys: list[str]) -> dict[str, Any]:
    changed = db.add_label(keys, QUARANTINE_LABEL)
    return {"quarantined": sorted(keys), "changed": changed}


def unquarantine(db: GraphBackend, keys: list[str]) -> dict[str, Any]:
    changed = db.remove_label(keys, QUARANTINE_LABEL)
    return {"released": sorted(keys), "changed": changed}


@dataclass
class Relink:
    item: str
    collection: str
    rels: list[RelRow]
    quarantined: bool

    def describe(self) -> str:
        kinds = ", ".join(f"{r.type}" for r in self.rels) or "no edge"
        return f"{self.item} -> {self.collection} ({kinds})"


def relink_plan(db: GraphBackend, root_record: str | None = None) -> list[Relink]:
    """Orphan items (quarantined or not) whose `collection` property names a live
    Collection: the ITEM / COLLECTION edges that would re-attach them."""
    nodes = db.nodes()
    rels = db.rels()
    everything = record_graph(nodes, rels, exclude_label=NO_EXCLUSION)
    root, _ = find_root(everything, root_record)
    orphans = set(assess(everything, root)["orphan_record_ids"])
    quarantined = {n.key for n in nodes if QUARANTINE_LABEL in n.labels}
    have = {(r.type, r.src, r.dst) for r in rels}
    plan = []
    for node in nodes:
        if node.record_type != "ITEM" or node.key is None or node.key not in orphans:
            continue
        collection = node.props.get("collection")
        if not isinstance(collection, str) or everything.records.get(collection) != "COLLECTION":
            continue
        if collection in quarantined or collection in orphans:
            continue
        wanted = [
            RelRow("ITEM", collection, node.key, {"target_type": "ITEM"}),
            RelRow("COLLECTION", node.key, collection, {"target_type": "COLLECTION"}),
        ]
        missing = [r for r in wanted if (r.type, r.src, r.dst) not in have]
        plan.append(Relink(node.key, collection, missing, node.key in quarantined))
    return sorted(plan, key=lambda p: p.item)


def relink(db: GraphBackend, entry: Relink) -> dict[str, Any]:
    created = db.merge_rels(entry.rels)
    released = db.remove_label([entry.item], QUARANTINE_LABEL) if entry.quarantined else 0
    return {
        "item": entry.item,
        "collection": entry.collection,
        "created": [r.as_dict() for r in created],
        "released": released,
    }


def unlink(
    db: GraphBackend, item: str, created: list[dict[str, Any]], requarantine: bool
) -> dict[str, Any]:
    """Undo `relink`: delete the edges it created, put the quarantine label back."""
    deleted = db.delete_rels(
        [RelRow(r["type"], r["src"], r["dst"], r.get("props") or {}) for r in created]
    )
    labelled = db.add_label([item], QUARANTINE_LABEL) if requarantine else 0
    return {"item": item, "deleted": deleted, "requarantined": labelled}
