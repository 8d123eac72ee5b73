"""The graph's model, shared by the access layer (db.py) and its back ends.

Rows (`NodeRow`, `RelRow`), declared and live schema (`SchemaDecl`, `SchemaState`), the
freeze state, the `GraphBackend` interface both back ends implement (sqlite_backend.py,
neo4j_backend.py), the errors they raise, and the identifier and URI helpers. Here so the
back ends need not import the module that chooses between them (no import cycle).
Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

SECTION = "graph"
NEO4J_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")
QUARANTINE_LABEL = "Quarantined"
RECORD_LABELS = {"Catalog": "CATALOG", "Collection": "COLLECTION", "Item": "ITEM"}
STAC_REL_TYPES = ("CHILD", "COLLECTION", "ITEM", "PARENT", "ROOT")
PROV_LABELS = ("Activity", "Agent", "Source")
# Labels, relationship types and property names end up inside Cypher / SQL text (they
# cannot be query parameters), so only plain identifiers are ever accepted.
IDENTIFIER_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")
SCHEMA_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")


class GraphUnavailable(Exception):
    """The graph cannot be reached or opened; the message is one line, without secrets."""


class GraphUnsupported(Exception):
    """The back end cannot do this (the message says what to do by hand instead)."""


def identifier(value: Any, what: str = "identifier") -> str:
    if not isinstance(value, str) or not IDENTIFIER_RE.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not a plain identifier ([A-Za-z][A-Za-z0-9_]*)")
    return value


# --- rows ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeRow:
    """A node: its `id` property (None if absent), sorted labels and properties."""

    key: str | None
    labels: tuple[str, ...]
    props: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def record_type(self) -> str | None:
        types = [RECORD_LABELS[label] for label in self.labels if label in RECORD_LABELS]
        return types[0] if len(types) == 1 else None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.key, "labels": list(self.labels), "props": self.props}


@dataclass(frozen=True)
class RelRow:
    """A relationship between two nodes named by their `id` properties."""

    type: str
    src: str | None
    dst: str | None
    props: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "src": self.src, "dst": self.dst, "props": self.props}


@dataclass(frozen=True)
class SchemaDecl:
    """A declared constraint (UNIQUE) or index (RANGE) on one label and property."""

    name: str
    kind: str  # UNIQUE | RANGE
    label: str
    prop: str  # the property name

    @property
    def is_constraint(self) -> bool:
        return self.kind == "UNIQUE"

    def describe(self) -> str:
        what = "UNIQUE constraint" if self.is_constraint else "index"
        return f"{what} {self.name} on :{self.label}({self.prop})"


@dataclass(frozen=True)
class SchemaState:
    """What the live graph has for one declaration."""

    decl: SchemaDecl
    state: str  # ONLINE | MISSING | MISMATCHED | FAILED | POPULATING
    detail: str = ""
    actual: str | None = None  # the live definition (SQL / Cypher that recreates it)
    live_name: str | None = None  # the live object's name (Neo4j may name it otherwise)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.decl.name,
            "kind": self.decl.kind,
            "label": self.decl.label,
            "property": self.decl.prop,
            "state": self.state,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class FreezeState:
    """Is the graph frozen (data writes blocked), by whom, and is it enforced?"""

    supported: bool
    reasons: tuple[str, ...] = ()
    enforced: bool = False
    detail: str = ""

    @property
    def frozen(self) -> bool:
        return bool(self.reasons) or self.enforced


class GraphBackend(Protocol):
    """What graph runbooks may ask of a graph. Reads never change anything."""

    kind: str  # "sqlite" | "neo4j"
    location: str  # for display: a relative path or a URI without credentials

    def node_total(self) -> int: ...
    def label_counts(self) -> dict[str, int]: ...
    def rel_type_counts(self) -> dict[str, int]: ...
    def nodes(self) -> list[NodeRow]: ...
    def rels(self) -> list[RelRow]: ...
    def isolated(self, labels: Sequence[str]) -> list[NodeRow]: ...
    def schema_state(self, decls: Sequence[SchemaDecl]) -> list[SchemaState]: ...
    def duplicates(self, label: str, prop: str) -> list[tuple[Any, int]]: ...
    def last_write(self) -> str | None: ...
    def freeze_state(self) -> FreezeState: ...
    def version(self) -> tuple[str, str]: ...
    def integrity(self) -> list[str]: ...

    # writes: only ever called through run.action (the apply gate)
    def add_label(self, keys: Sequence[str], label: str) -> int: ...
    def remove_label(self, keys: Sequence[str], label: str) -> int: ...
    def merge_nodes(self, rows: Sequence[NodeRow]) -> list[str]: ...
    def delete_nodes(self, keys: Sequence[str]) -> int: ...
    def merge_rels(self, rows: Sequence[RelRow]) -> list[RelRow]: ...
    def delete_rels(self, rows: Sequence[RelRow]) -> int: ...
    def create_schema(self, decl: SchemaDecl) -> dict[str, Any]: ...
    def drop_schema(self, name: str) -> bool: ...
    def restore_schema(self, name: str, definition: str) -> bool: ...
    def reindex(self, name: str) -> bool: ...
    def freeze(self, reason: str) -> bool: ...
    def unfreeze(self, reason: str) -> bool: ...
    def close(self) -> None: ...


# --- configuration ---------------------------------------------------------------------


def is_neo4j_uri(uri: str) -> bool:
    scheme, sep, _ = uri.partition("://")
    return bool(sep) and scheme.lower() in NEO4J_SCHEMES


def redact_uri(uri: str) -> str:
    """A URI safe to print: any `user:password@` part is removed."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    host = rest.split("/", 1)[0]
    tail = rest[len(host) :]
    return f"{scheme}://{host.rsplit('@', 1)[-1]}{tail}"
