"""Link closure of a STAC record graph, after KFM's `STAC_LINK_CLOSURE_ASSESSMENT_V1`.

KFM's contract (contracts/data/stac_link_closure_assessment.md) states the rules, which
apply unchanged to the live graph, where STAC records are `:Catalog` / `:Collection` /
`:Item` nodes and their links `CHILD` / `PARENT` / `ITEM` / `COLLECTION` / `ROOT`
relationships:

- `root` links target the declared root Catalog;
- `child` / `parent` target a Catalog or Collection and reciprocate each other;
- `item` goes Collection -> Item, `collection` Item -> Collection, and they reciprocate;
- every target exists with its declared type (`target_type` on the relationship), and
  every record is reachable from the root through `child` and `item` links.

A link to something that is not a record (in a graph: a stub node a loader MERGEd by
id alone) is a *missing target*; an unreachable record is an *orphan*.

KFM's fixture packets (cases.json) are assessed the same way: each packet's records are
loaded into a scratch in-memory SQLite graph through the access layer and the graph is
asked the questions above; packet shape, order and identity (RFC 8785 spec_hash) are
validated like KFM's validator, with its finding codes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...vocab import Verdict
from .. import BLOCKING, HOLD, Finding
from ..common.jcs import CanonicalizationError, spec_hash
from ..common.json import pointer, set_at
from .db import IDENTIFIER_RE, QUARANTINE_LABEL, RECORD_LABELS, STAC_REL_TYPES, NodeRow, RelRow

RECIPROCAL = {"child": "parent", "parent": "child", "item": "collection", "collection": "item"}
HIERARCHY = frozenset({"child", "item"})
LABEL_OF_TYPE = {kind: label for label, kind in RECORD_LABELS.items()}
IDENTITY_PREFIX = "kfm:stac-link-closure:"
MAX_SCHEMA_FINDINGS = 50


@dataclass(frozen=True)
class Link:
    source: str
    rel: str  # lower case, as in STAC
    target: str
    target_type: str  # declared

    @property
    def key(self) -> str:
        return f"{self.source}|{self.rel}|{self.target}"


@dataclass
class RecordGraph:
    records: dict[str, str]  # record id -> CATALOG | COLLECTION | ITEM
    links: list[Link] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)  # quarantined, out of scope

    def links_from(self, record_id: str) -> list[Link]:
        return [link for link in self.links if link.source == record_id]


def record_graph(
    nodes: Iterable[NodeRow], rels: Iterable[RelRow], exclude_label: str = QUARANTINE_LABEL
) -> RecordGraph:
    """The STAC record graph inside a property graph (quarantined nodes left out)."""
    nodes = list(nodes)
    excluded = {n.key for n in nodes if n.key is not None and exclude_label in n.labels}
    records: dict[str, str] = {}
    for node in nodes:
        if node.key is not None and node.key not in excluded and node.record_type:
            records[node.key] = node.record_type
    links = []
    for rel in rels:
        if rel.type not in STAC_REL_TYPES or rel.src not in records or rel.dst is None:
            continue
        if rel.dst in excluded:
            continue
        declared = rel.props.get("target_type") or records.get(rel.dst) or "UNKNOWN"
        links.append(Link(rel.src, rel.type.lower(), rel.dst, str(declared)))
    return RecordGraph(records, links, sorted(excluded))


def _type_invalid(link: Link, source_type: str, target_type: str, root: str) -> bool:
    rel = link.rel
    if rel == "root":
        return link.target != root or target_type != "CATALOG"
    if rel == "item":
        return source_type != "COLLECTION" or target_type != "ITEM"
    if rel == "collection":
        return source_type != "ITEM" or target_type != "COLLECTION"
    if rel in ("child", "parent"):
        return target_type not in ("CATALOG", "COLLECTION")
    return False


def assess(graph: RecordGraph, root: str | None, *, partial: bool = False) -> dict[str, Any]:
    """KFM's assessment block for a record graph (outcome, reason and the 5 id lists)."""
    records = graph.records
    missing: set[str] = set()
    nonreciprocal: set[str] = set()
    mismatched: set[str] = set()
    by_source: dict[str, list[Link]] = {}
    for link in graph.links:
        by_source.setdefault(link.source, []).append(link)
    for link in graph.links:
        target_type = records.get(link.target)
        if target_type is None:
            missing.add(link.target)
            continue
        source_type = records[link.source]
        if target_type != link.target_type or _type_invalid(
            link, source_type, target_type, root or ""
        ):
            mismatched.add(link.key)
        back = RECIPROCAL.get(link.rel)
        if back and not any(
            other.rel == back and other.target == link.source and other.target_type == source_type
            for other in by_source.get(link.target, [])
        ):
            nonreciprocal.add(link.key)
    reachable: set[str] = set()
    pending = [root] if root in records else []
    while pending:
        current = pending.pop()
        if current in reachable:
            continue
        reachable.add(current)
        pending += [
            link.target
            for link in by_source.get(current, [])
            if link.rel in HIERARCHY and link.target in records
        ]
    orphans = set(records) - reachable
    lists = {
        "reachable_record_ids": sorted(reachable),
        "missing_target_record_ids": sorted(missing),
        "nonreciprocal_edges": sorted(nonreciprocal),
        "type_mismatch_edges": sorted(mismatched),
        "orphan_record_ids": sorted(orphans),
    }
    if missing or nonreciprocal or mismatched or orphans:
        return {"outcome": "LINK_GRAPH_OPEN", "reason_code": "LOCAL_LINK_CONFLICT", **lists}
    if partial:
        return {"outcome": "PARTIAL_GRAPH", "reason_code": "PARTIAL_GRAPH_ONLY", **lists}
    return {"outcome": "LINK_GRAPH_CLOSED", "reason_code": "FULL_LOCAL_CLOSURE_CONFIRMED", **lists}


def assessment_findings(assessment: Mapping[str, Any], graph: RecordGraph) -> list[Finding]:
    """The assessment's conflicts as graph findings (stable codes, one per fact)."""
    found = []
    for record_id in assessment["orphan_record_ids"]:
        kind = graph.records.get(record_id, "?")
        parents = [link for link in graph.links_from(record_id) if link.rel == "collection"]
        why = "item without a parent collection" if kind == "ITEM" and not parents else kind
        found.append(
            Finding(
                "GRAPH_ORPHAN_RECORD", record_id, "/", BLOCKING, f"{why}: unreachable from the root"
            )
        )
    for target in assessment["missing_target_record_ids"]:
        edges = sorted(link.key for link in graph.links if link.target == target)
        found.append(
            Finding(
                "GRAPH_MISSING_TARGET",
                target,
                "/",
                BLOCKING,
                f"linked by {', '.join(edges)} but no such record (stub node)",
            )
        )
    for edge in assessment["nonreciprocal_edges"]:
        found.append(
            Finding("GRAPH_NONRECIPROCAL_EDGE", edge, "/", BLOCKING, "no reciprocal link back")
        )
    for edge in assessment["type_mismatch_edges"]:
        found.append(
            Finding("GRAPH_TYPE_MISMATCH_EDGE", edge, "/", BLOCKING, "target type not allowed")
        )
    return sorted(found)


# --- KFM fixture packets ---------------------------------------------------------------


def _records(packet: Mapping[str, Any]) -> list[dict[str, Any]]:
    records = packet.get("records")
    if not isinstance(records, list):
        return []
    return [r for r in records if isinstance(r, dict) and isinstance(r.get("record_id"), str)]


def _links(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    links = record.get("links")
    if not isinstance(links, list):
        return []
    return [
        link
        for link in links
        if isinstance(link, dict)
        and isinstance(link.get("target_record_id"), str)
        and isinstance(link.get("rel"), str)
        and IDENTIFIER_RE.fullmatch(link["rel"])
    ]


def load_packet(packet: Mapping[str, Any]) -> tuple[list[NodeRow], list[RelRow]]:
    """A packet's records loaded into a scratch SQLite graph, read back as rows."""
    from .sqlite_backend import SqliteGraph

    records = _records(packet)
    ids = {r["record_id"] for r in records}
    nodes = []
    for record in records:
        label = LABEL_OF_TYPE.get(str(record.get("record_type")))
        props = {"id": record["record_id"]}
        if isinstance(record.get("record_conformance_ref"), str):
            props["record_conformance_ref"] = record["record_conformance_ref"]
        nodes.append(NodeRow(record["record_id"], (label,) if label else (), props))
    stubs = sorted({link["target_record_id"] for r in records for link in _links(r)} - ids)
    nodes += [NodeRow(stub, (), {"id": stub}) for stub in stubs]
    db = SqliteGraph.scratch()
    try:
        db.insert_nodes(nodes)
        db.insert_rels(
            [
                RelRow(
                    link["rel"].upper(),
                    record["record_id"],
                    link["target_record_id"],
                    {"target_type": str(link.get("target_record_type"))},
                )
                for record in records
                for link in _links(record)
            ]
        )
        return db.nodes(), db.rels()
    finally:
        db.close()


def packet_assessment(packet: Mapping[str, Any]) -> dict[str, Any]:
    """What the assessment block of a packet must say, computed through the graph."""
    if packet.get("assessment_state") == "ERROR":
        empty: dict[str, Any] = {
            key: []
            for key in (
                "reachable_record_ids",
                "missing_target_record_ids",
                "nonreciprocal_edges",
                "type_mismatch_edges",
                "orphan_record_ids",
            )
        }
        return {"outcome": Verdict.ERROR, "reason_code": "UPSTREAM_ERROR", **empty}
    nodes, rels = load_packet(packet)
    graph = record_graph(nodes, rels)
    root = packet.get("root_record_id")
    partial = packet.get("graph_scope") == "PARTIAL_DECLARED_GRAPH"
    return assess(graph, root if isinstance(root, str) else None, partial=partial)


def identity(packet: Mapping[str, Any]) -> tuple[str, str]:
    """(spec_hash, assessment_id): JCS + SHA-256 of the packet minus both fields."""
    subject = {k: v for k, v in packet.items() if k not in ("assessment_id", "spec_hash")}
    digest = spec_hash(subject)
    return digest, IDENTITY_PREFIX + digest.removeprefix("sha256:")[:24]


@dataclass
class PacketVerdict:
    case_id: str
    outcome: str  # PASS | ABSTAIN | DENY | ERROR
    findings: list[tuple[str, str]]  # (code, JSON pointer)
    expected_outcome: str | None = None
    expected_findings: list[tuple[str, str]] | None = None
    assessment: dict[str, Any] = field(default_factory=dict)

    @property
    def matches(self) -> bool | None:
        if self.expected_outcome is None:
            return None
        return self.outcome == self.expected_outcome and self.findings == self.expected_findings

    def as_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "outcome": self.outcome,
            "codes": [f"{code} {path}" for code, path in self.findings],
            "expected_outcome": self.expected_outcome,
            "matches_expected": self.matches,
            "orphans": self.assessment.get("orphan_record_ids", []),
            "missing_targets": self.assessment.get("missing_target_record_ids", []),
            "nonreciprocal": self.assessment.get("nonreciprocal_edges", []),
            "type_mismatch": self.assessment.get("type_mismatch_edges", []),
        }


def _semantic(packet: Mapping[str, Any]) -> list[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    records = packet["records"]
    ids = [r["record_id"] for r in records]
    if ids != sorted(ids) or len(ids) != len(set(ids)):
        out.add(("STAC_LINK_RECORD_ORDER_INVALID", "/records"))
    for index, record in enumerate(records):
        keys = [(x["rel"], x["target_record_id"], x["target_record_type"]) for x in record["links"]]
        if keys != sorted(keys) or len(keys) != len(set(keys)):
            out.add(("STAC_LINK_LINK_ORDER_INVALID", f"/records/{index}/links"))
    roots = [r for r in records if r["record_id"] == packet["root_record_id"]]
    if len(roots) != 1 or roots[0]["record_type"] != "CATALOG":
        out.add(("STAC_LINK_ROOT_INVALID", "/root_record_id"))
    if not out and packet["assessment"] != packet_assessment(packet):
        out.add(("STAC_LINK_ASSESSMENT_MISMATCH", "/assessment"))
    try:
        expected_hash, expected_id = identity(packet)
    except CanonicalizationError:
        out.add(("STAC_LINK_CANONICALIZATION_FAILED", "/spec_hash"))
    else:
        if packet["spec_hash"] != expected_hash:
            out.add(("STAC_LINK_SPEC_HASH_MISMATCH", "/spec_hash"))
        if packet["assessment_id"] != expected_id:
            out.add(("STAC_LINK_ASSESSMENT_ID_MISMATCH", "/assessment_id"))
    return sorted(out)


def validate_packet(
    packet: Mapping[str, Any], schema: Mapping[str, Any]
) -> tuple[str, list[tuple[str, str]]]:
    """KFM's verdict on one packet: (PASS | ABSTAIN | DENY | ERROR, [(code, pointer)])."""
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # ~1.5 s

    errors = []
    for error in Draft202012Validator(schema).iter_errors(packet):
        errors.append(("STAC_LINK_SCHEMA_INVALID", pointer(error.absolute_path)))
        if len(errors) >= MAX_SCHEMA_FINDINGS:
            break
    if errors:
        return "DENY", sorted(set(errors))
    semantic = _semantic(packet)
    if semantic:
        return "DENY", semantic
    outcome = packet["assessment"]["outcome"]
    if outcome == "PARTIAL_GRAPH":
        return "ABSTAIN", [("STAC_LINK_PARTIAL_GRAPH", "/assessment/outcome")]
    if outcome == "LINK_GRAPH_OPEN":
        return "DENY", [("STAC_LINK_GRAPH_OPEN", "/assessment/outcome")]
    if outcome == Verdict.ERROR:
        return Verdict.ERROR, [("STAC_LINK_UPSTREAM_ERROR", "/assessment/outcome")]
    return Verdict.PASS, []


def materialize(bases: Mapping[str, Any], case: Mapping[str, Any]) -> dict[str, Any]:
    """A case's packet, built like KFM's harness: base + mutations, generated fields."""
    document: dict[str, Any] = copy.deepcopy(dict(bases[case["base"]]))
    for mutation in case.get("mutations", []):
        set_at(document, mutation["path"], mutation["value"])
    if "assessment_override" in case:
        document["assessment"] = copy.deepcopy(case["assessment_override"])
    else:
        document["assessment"] = packet_assessment(document)
    digest, assessment_id = identity(document)
    document["spec_hash"] = case.get("spec_hash_override", digest)
    document["assessment_id"] = case.get("assessment_id_override", assessment_id)
    return document


def _read(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    from ..catalog.health import read_json_object

    value, code = read_json_object(path)
    return value, None if code is None else "STAC_LINK_" + code.removeprefix("CAT_")


def assess_cases(cases_path: Path, schema_path: Path) -> tuple[list[PacketVerdict], list[Finding]]:
    """Every case of a KFM cases.json, verdict and findings; bad input becomes findings."""
    manifest, code = _read(cases_path)
    if manifest is None:
        return [], [Finding(code or "STAC_LINK_FILE_READ_ERROR", cases_path.name)]
    schema, _ = _read(schema_path)
    if schema is None:
        return [], [Finding("STAC_LINK_SCHEMA_UNAVAILABLE", schema_path.name, "/", BLOCKING)]
    bases, cases = manifest.get("bases"), manifest.get("cases")
    if not isinstance(bases, dict) or not isinstance(cases, list):
        return [], [Finding("STAC_LINK_CASES_INVALID", cases_path.name, "/", BLOCKING)]
    verdicts, problems = [], []
    for index, case in enumerate(cases):
        case_id = case.get("case_id") if isinstance(case, dict) else None
        name = case_id if isinstance(case_id, str) else f"cases[{index}]"
        try:
            assert isinstance(case, dict)
            packet = materialize(bases, case)
            outcome, findings = validate_packet(packet, schema)
        except (AssertionError, KeyError, IndexError, TypeError, ValueError) as exc:
            problems.append(
                Finding("STAC_LINK_CASE_INVALID", name, "/", BLOCKING, type(exc).__name__)
            )
            continue
        expected = case.get("expected_findings")
        verdicts.append(
            PacketVerdict(
                name,
                outcome,
                findings,
                case.get("expected_outcome"),
                [(f["code"], f["path"]) for f in expected] if isinstance(expected, list) else None,
                dict(packet.get("assessment") or {}),
            )
        )
    return verdicts, problems


def verdict_findings(verdicts: Sequence[PacketVerdict]) -> list[Finding]:
    """Packet verdicts as findings: DENY / ERROR blocking, ABSTAIN held."""
    out = []
    for verdict in verdicts:
        severity = HOLD if verdict.outcome == "ABSTAIN" else BLOCKING
        for code, path in verdict.findings:
            out.append(Finding(code, verdict.case_id, path, severity, verdict.outcome))
    return out
