"""The graph access layer: one small interface, two real back ends.

KFM's graph is Neo4j. Graph runbooks are written once against `GraphBackend` and run on
either back end, chosen by the target's `graph.uri`:

- `bolt://…` / `neo4j://…` (and their `+s` / `+ssc` variants): Neo4j through the official
  `neo4j` driver, with Cypher (`graph_neo4j.py`; the driver is imported only then).
- anything else is a path to an embedded **SQLite graph** (`graph_sqlite.py`): tables
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

import decimal
import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TargetError
from ..target import Target
from .graph_model import (
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
    "CanonicalizationError",
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
    "canonical_json",
    "connect",
    "content_digest",
    "graph_digest",
    "identifier",
    "is_neo4j_uri",
    "redact_uri",
    "spec_hash",
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
        try:
            return path.relative_to(self.base).as_posix()
        except ValueError:
            return path.name

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
        from .graph_neo4j import Neo4jGraph

        return Neo4jGraph.connect(config.uri, config.database, config.auth_env)
    if config.path is None:
        raise GraphUnavailable("the target names no live graph (graph.uri is not set)")
    from .graph_sqlite import SqliteGraph

    return SqliteGraph.open(config.path, display=config.location)


def try_connect(config: GraphConfig) -> tuple[GraphBackend | None, str]:
    """(graph, "") or (None, one-line reason): runbooks turn the reason into HOLD."""
    try:
        return connect(config), ""
    except GraphUnavailable as exc:
        return None, str(exc)


# --- canonical JSON (RFC 8785 JCS) and content hashes ----------------------------------


class CanonicalizationError(ValueError):
    pass


def _es6_number(value: float) -> str:
    """ECMAScript Number::toString, as RFC 8785 requires for numbers."""
    if not math.isfinite(value):
        raise CanonicalizationError(f"non-finite number {value!r}")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    digits_t = decimal.Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digits_t.digits))
    assert isinstance(digits_t.exponent, int)
    n = len(digits) + digits_t.exponent  # value = 0.digits × 10^n
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        exponent = n - 1
        mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
        text = f"{mantissa}e{'+' if exponent > 0 else '-'}{abs(exponent)}"
    return sign + text


def _canonical(value: Any, out: list[str]) -> None:
    if value is None or isinstance(value, bool):
        out.append(json.dumps(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_es6_number(value))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _canonical(item, out)
        out.append("]")
    elif isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise CanonicalizationError("object keys must be strings")
        out.append("{")
        for index, key in enumerate(sorted(value, key=lambda k: k.encode("utf-16-be"))):
            if index:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _canonical(value[key], out)
        out.append("}")
    else:
        raise CanonicalizationError(f"{type(value).__name__} is not JSON")


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) bytes of a JSON value; CanonicalizationError outside its domain."""
    out: list[str] = []
    try:
        _canonical(value, out)
        return "".join(out).encode("utf-8")
    except (UnicodeEncodeError, RecursionError) as exc:
        raise CanonicalizationError(str(exc).split("\n")[0]) from exc


def spec_hash(value: Any) -> str:
    """KFM's spec_hash: `sha256:` + SHA-256 of the JCS bytes."""
    return "sha256:" + hashlib.sha256(canonical_json(value)).hexdigest()


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
        canonical_json({"labels": sorted(n.labels), "props": n.props}) for n in nodes
    )
    rel_lines = sorted(
        canonical_json({"type": r.type, "src": r.src, "dst": r.dst, "props": r.props}) for r in rels
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
