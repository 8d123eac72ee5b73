"""The graph access layer: one small interface, two real back ends.

KFM's graph is Neo4j. Graph runbooks are written once against `GraphBackend` and run on
either back end, chosen by the target's `graph.uri`:

- `bolt://…` / `neo4j://…` (and their `+s` / `+ssc` variants): Neo4j through the official
  `neo4j` driver, with Cypher (`neo4j_backend.py`; the driver is imported only then).
- anything else is a path to an embedded **SQLite graph** (`sqlite_backend.py`): tables
  `nodes` (labels, properties) and `rels` (type, endpoints, properties), real UNIQUE
  indexes for declared constraints, and the sqlite3 backup API for backups.

    graph:
      uri: graph/graph.sqlite          # or bolt://graph.kfm.internal:7687
      database: neo4j                  # Neo4j only
      auth_env: [NEO4J_USER, NEO4J_PASSWORD]   # Neo4j only: names of env variables
      root_record: kfm-sandbox         # the root Catalog's id (default: the only Catalog)
      schema: graph/schema.json        # declared constraints and indexes
      snapshot: graph/snapshot.json    # last known-good counts, with tolerances
      backups: graph/backups           # LATEST pointer, backup files and manifests
      source_catalog: catalog/catalog.json   # the STAC catalog the graph derives from

Nodes are identified by their `id` property (KFM ids), never by back-end internal ids,
so content hashes compare across back ends and restores. Imported inside the kernel:
standard library only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import TargetError
from ...target import Target
from ..common.jcs import content_bytes
from ..common.paths import rel
from .model import (
    IDENTIFIER_RE,
    NEO4J_SCHEMES,
    PROV_LABELS,
    QUARANTINE_LABEL,
    RECORD_LABELS,
    SCHEMA_NAME_RE,
    SECTION,
    STAC_REL_TYPES,
    FreezeState,
    GraphBackend,
    GraphUnavailable,
    GraphUnsupported,
    NodeRow,
    RelRow,
    SchemaDecl,
    SchemaState,
    identifier,
    is_neo4j_uri,
    redact_uri,
)

__all__ = [
    "IDENTIFIER_RE",
    "NEO4J_SCHEMES",
    "PROV_LABELS",
    "QUARANTINE_LABEL",
    "RECORD_LABELS",
    "SCHEMA_NAME_RE",
    "SECTION",
    "STAC_REL_TYPES",
    "ContentDigest",
    "FreezeState",
    "GraphBackend",
    "GraphConfig",
    "GraphUnavailable",
    "GraphUnsupported",
    "NodeRow",
    "RelRow",
    "SchemaDecl",
    "SchemaState",
    "connect",
    "content_digest",
    "graph_digest",
    "identifier",
    "is_neo4j_uri",
    "redact_uri",
    "try_connect",
]


@dataclass(frozen=True)
class GraphConfig:
    """The target's `graph` section, resolved."""

    base: Path  # the target's folder
    uri: str | None  # bolt://… or None (SQLite: see `path`)
    path: Path | None  # the SQLite graph file
    database: str | None = None
    auth_env: tuple[str, ...] = ()
    root_record: str | None = None
    schema: Path | None = None
    snapshot: Path | None = None
    backups: Path | None = None
    backup_max_lag_hours: float = 24.0
    source_catalog: Path | None = None
    compatibility_matrix: Path | None = None
    closure_cases: Path | None = None
    closure_schema: Path | None = None

    @property
    def backend(self) -> str | None:
        if self.uri is not None:
            return "neo4j"
        return "sqlite" if self.path is not None else None

    @property
    def location(self) -> str:
        if self.uri is not None:
            return redact_uri(self.uri)
        if self.path is None:
            return "(no live graph)"
        return self.rel(self.path)

    def rel(self, path: Path) -> str:
        return rel(path, self.base)

    @classmethod
    def from_target(cls, target: Target) -> GraphConfig:
        section = target.section(SECTION)
        uri = section.get("uri")
        if uri is not None and (not isinstance(uri, str) or not uri.strip()):
            raise TargetError(f"target {target.path}: 'graph.uri' must be a path or bolt:// URI")
        neo4j_uri = uri if isinstance(uri, str) and is_neo4j_uri(uri) else None
        if isinstance(uri, str) and "://" in uri and neo4j_uri is None:
            raise TargetError(
                f"target {target.path}: graph.uri scheme must be one of "
                f"{', '.join(NEO4J_SCHEMES)} or a SQLite file path"
            )
        path = target.resolve(SECTION, "uri", required=False) if neo4j_uri is None else None
        auth = section.get("auth_env") or []
        if not isinstance(auth, list) or not all(isinstance(a, str) for a in auth):
            raise TargetError(f"target {target.path}: graph.auth_env must list env var names")
        root = section.get("root_record")
        lag = section.get("backup_max_lag_hours", 24)
        if isinstance(lag, bool) or not isinstance(lag, int | float) or lag <= 0:
            raise TargetError(f"target {target.path}: graph.backup_max_lag_hours must be > 0")

        def opt(key: str) -> Path | None:
            return target.resolve(SECTION, key, required=False)

        return cls(
            base=target.base,
            uri=neo4j_uri,
            path=path,
            database=str(section["database"]) if section.get("database") else None,
            auth_env=tuple(auth),
            root_record=str(root) if root else None,
            schema=opt("schema"),
            snapshot=opt("snapshot"),
            backups=opt("backups"),
            backup_max_lag_hours=float(lag),
            source_catalog=opt("source_catalog"),
            compatibility_matrix=opt("compatibility_matrix"),
            closure_cases=opt("closure_cases"),
            closure_schema=opt("closure_schema"),
        )


def connect(config: GraphConfig) -> GraphBackend:
    """Open the target's live graph (read-only reads; writes only via explicit calls)."""
    if config.uri is not None:
        from .neo4j_backend import Neo4jGraph

        return Neo4jGraph.connect(config.uri, config.database, config.auth_env)
    if config.path is None:
        raise GraphUnavailable("the target names no live graph (graph.uri is not set)")
    from .sqlite_backend import SqliteGraph

    return SqliteGraph.open(config.path, display=config.location)


def try_connect(config: GraphConfig) -> tuple[GraphBackend | None, str]:
    """(graph, "") or (None, one-line reason): runbooks turn the reason into HOLD."""
    try:
        return connect(config), ""
    except GraphUnavailable as exc:
        return None, str(exc)


# --- content hashes ------------------------------------------------------------------


@dataclass(frozen=True)
class ContentDigest:
    """A back-end independent fingerprint of a graph's content."""

    sha256: str
    nodes: int
    rels: int
    labels: dict[str, int] = field(compare=False, hash=False, default_factory=dict)
    rel_types: dict[str, int] = field(compare=False, hash=False, default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "content_sha256": self.sha256,
            "nodes": self.nodes,
            "relationships": self.rels,
            "labels": dict(sorted(self.labels.items())),
            "relationship_types": dict(sorted(self.rel_types.items())),
        }


def content_digest(nodes: Iterable[NodeRow], rels: Iterable[RelRow]) -> ContentDigest:
    """sha256 over the sorted canonical lines of every node and relationship.

    Nodes are keyed by their `id` property and labels, relationships by type and endpoint
    ids: internal ids (SQLite rowids, Neo4j element ids) never enter the hash.
    """
    node_lines = sorted(
        content_bytes({"labels": sorted(n.labels), "props": n.props}) for n in nodes
    )
    rel_lines = sorted(
        content_bytes({"type": r.type, "src": r.src, "dst": r.dst, "props": r.props}) for r in rels
    )
    digest = hashlib.sha256()
    for line in [b"nodes", *node_lines, b"rels", *rel_lines]:
        digest.update(line + b"\n")
    labels: dict[str, int] = {}
    rel_types: dict[str, int] = {}
    for line in node_lines:
        for label in json.loads(line)["labels"]:
            labels[label] = labels.get(label, 0) + 1
    for line in rel_lines:
        kind = json.loads(line)["type"]
        rel_types[kind] = rel_types.get(kind, 0) + 1
    return ContentDigest(digest.hexdigest(), len(node_lines), len(rel_lines), labels, rel_types)


def graph_digest(db: GraphBackend) -> ContentDigest:
    return content_digest(db.nodes(), db.rels())
