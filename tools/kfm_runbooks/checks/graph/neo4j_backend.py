"""The Neo4j back end: the same graph questions, asked in Cypher through the driver.

Selected when the target's `graph.uri` is `bolt://…` or `neo4j://…`; the `neo4j`
package is imported only then. Reads run in READ transactions (the server refuses a
write in them); writes are auto-commit WRITE sessions, only ever called through
`run.action`. Every query text is a module constant so it can be reviewed and tested;
labels, types and property names are validated identifiers quoted with backticks
(Cypher cannot take them as parameters), values are always parameters.

Credentials come from environment variables named in the target (`graph.auth_env`),
never from the target itself, and never appear in messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .model import (
    FreezeState,
    GraphUnavailable,
    GraphUnsupported,
    NodeRow,
    RelRow,
    SchemaDecl,
    SchemaState,
    identifier,
    redact_uri,
)

Q_NODE_TOTAL = "MATCH (n) RETURN count(n) AS count"
Q_LABEL_COUNTS = (
    "MATCH (n) UNWIND labels(n) AS label RETURN label, count(*) AS count ORDER BY label"
)
Q_REL_COUNTS = "MATCH ()-[r]->() RETURN type(r) AS type, count(*) AS count ORDER BY type"
Q_NODES = "MATCH (n) RETURN labels(n) AS labels, properties(n) AS props ORDER BY n.id"
Q_RELS = (
    "MATCH (s)-[r]->(t) RETURN type(r) AS type, s.id AS src, t.id AS dst, "
    "properties(r) AS props ORDER BY src, type, dst"
)
Q_ISOLATED = (
    "MATCH (n) WHERE any(label IN labels(n) WHERE label IN $labels) AND NOT (n)--() "
    "RETURN labels(n) AS labels, properties(n) AS props ORDER BY n.id"
)
Q_DUPLICATES = (
    "MATCH (n:`{label}`) WHERE n.`{prop}` IS NOT NULL WITH n.`{prop}` AS value, "
    "count(*) AS count WHERE count > 1 RETURN value, count ORDER BY value"
)
Q_SHOW_CONSTRAINTS = "SHOW CONSTRAINTS YIELD *"
Q_SHOW_INDEXES = "SHOW INDEXES YIELD *"
Q_COMPONENTS = "CALL dbms.components() YIELD name, versions, edition RETURN name, versions, edition"
Q_ADD_LABEL = (
    "UNWIND $keys AS key MATCH (n {{id: key}}) WHERE NOT n:`{label}` "
    "SET n:`{label}` RETURN count(n) AS count"
)
Q_REMOVE_LABEL = (
    "UNWIND $keys AS key MATCH (n:`{label}` {{id: key}}) REMOVE n:`{label}` "
    "RETURN count(n) AS count"
)
Q_MERGE_NODE = (
    "OPTIONAL MATCH (e:`{label}` {{id: $key}}) WITH e WHERE e IS NULL "
    "CREATE (n{labels}) SET n = $props RETURN n.id AS id"
)
Q_DELETE_NODES = (
    "UNWIND $keys AS key MATCH (n {id: key}) WHERE NOT (n)--() DELETE n RETURN count(*) AS count"
)
Q_MERGE_REL = (
    "MATCH (s {{id: $src}}) MATCH (t {{id: $dst}}) WITH s, t LIMIT 1 "
    "OPTIONAL MATCH (s)-[e:`{type}`]->(t) WITH s, t, e WHERE e IS NULL "
    "CREATE (s)-[r:`{type}`]->(t) SET r = $props RETURN type(r) AS type"
)
Q_DELETE_REL = (
    "MATCH (s {{id: $src}})-[r:`{type}`]->(t {{id: $dst}}) WITH r LIMIT 1 DELETE r "
    "RETURN count(*) AS count"
)
Q_CREATE_CONSTRAINT = (
    "CREATE CONSTRAINT `{name}` IF NOT EXISTS FOR (n:`{label}`) REQUIRE n.`{prop}` IS UNIQUE"
)
Q_CREATE_INDEX = "CREATE INDEX `{name}` IF NOT EXISTS FOR (n:`{label}`) ON (n.`{prop}`)"
Q_DROP_CONSTRAINT = "DROP CONSTRAINT `{name}` IF EXISTS"
Q_DROP_INDEX = "DROP INDEX `{name}` IF EXISTS"
UNIQUE_TYPES = frozenset({"UNIQUENESS", "NODE_PROPERTY_UNIQUENESS"})
RANGE_TYPES = frozenset({"RANGE", "BTREE"})
FREEZE_HOWTO = (
    "freezing a Neo4j database is a DBA step: on the system database run "
    "`ALTER DATABASE <name> SET ACCESS READ ONLY` (Enterprise edition); "
    "`… SET ACCESS READ WRITE` lifts it"
)
_RESTORABLE = re.compile(
    r"CREATE (CONSTRAINT|INDEX) `([a-z][a-z0-9_]*)` IF NOT EXISTS FOR \(n:`[A-Za-z][A-Za-z0-9_]*`\)"
    r" (REQUIRE|ON) \(?n\.`[A-Za-z][A-Za-z0-9_]*`\)?( IS UNIQUE)?"
)

# A runner executes one query: (query, parameters, write?) -> records (mappings).
Runner = Callable[[str, dict[str, Any], bool], Sequence[Mapping[str, Any]]]


def plain(value: Any) -> Any:
    """Driver values as plain JSON: temporal values as ISO text, points as lists."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, bytes | bytearray):
        return value.hex()
    iso = getattr(value, "iso_format", None)
    if callable(iso):
        return str(iso())
    return str(value)


def _key(value: Any) -> str | None:
    return None if value is None else str(value)


def map_counts(records: Sequence[Mapping[str, Any]], key: str) -> dict[str, int]:
    return {str(r[key]): int(r["count"]) for r in records if r.get(key) is not None}


def map_nodes(records: Sequence[Mapping[str, Any]]) -> list[NodeRow]:
    out = []
    for r in records:
        props = plain(r.get("props") or {})
        out.append(NodeRow(_key(props.get("id")), tuple(sorted(r.get("labels") or [])), props))
    return out


def map_rels(records: Sequence[Mapping[str, Any]]) -> list[RelRow]:
    return [
        RelRow(str(r["type"]), _key(r.get("src")), _key(r.get("dst")), plain(r.get("props") or {}))
        for r in records
    ]


def map_version(records: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    for r in records:
        if str(r.get("name", "")).lower().startswith("neo4j"):
            versions = r.get("versions") or ["?"]
            edition = r.get("edition") or "?"
            return "NEO4J", f"{versions[0]} ({edition})"
    return "NEO4J", "UNKNOWN"


def _on(row: Mapping[str, Any], decl: SchemaDecl) -> bool:
    return list(row.get("labelsOrTypes") or []) == [decl.label] and list(
        row.get("properties") or []
    ) == [decl.prop]


def create_query(decl: SchemaDecl) -> str:
    label = identifier(decl.label, "label")
    prop = identifier(decl.prop, "property")
    template = Q_CREATE_CONSTRAINT if decl.is_constraint else Q_CREATE_INDEX
    return template.format(name=decl.name, label=label, prop=prop)


def map_schema(
    decls: Sequence[SchemaDecl],
    constraints: Sequence[Mapping[str, Any]],
    indexes: Sequence[Mapping[str, Any]],
) -> list[SchemaState]:
    """SHOW CONSTRAINTS / SHOW INDEXES rows -> one state per declaration."""
    by_name = {str(i.get("name")): i for i in indexes}
    out = []
    for decl in decls:
        if decl.is_constraint:
            found = [c for c in constraints if _on(c, decl) and str(c.get("type")) in UNIQUE_TYPES]
            if not found:
                plain_index = [i for i in indexes if _on(i, decl) and not i.get("owningConstraint")]
                if plain_index:
                    name = str(plain_index[0].get("name"))
                    recreate = create_query(SchemaDecl(name, "RANGE", decl.label, decl.prop))
                    out.append(
                        SchemaState(
                            decl, "MISMATCHED", f"index {name} is not UNIQUE", recreate, name
                        )
                    )
                else:
                    out.append(SchemaState(decl, "MISSING", "no UNIQUE constraint on it"))
                continue
            constraint = found[0]
            owned = constraint.get("ownedIndex") or constraint.get("ownedIndexId")
            index = by_name.get(str(owned)) or next(
                (i for i in indexes if i.get("owningConstraint") == constraint.get("name")), None
            )
        else:
            index = next(
                (i for i in indexes if _on(i, decl) and i.get("type") in RANGE_TYPES), None
            )
            if index is None:
                out.append(SchemaState(decl, "MISSING", "no RANGE index on it"))
                continue
        state = str(index.get("state", "UNKNOWN")).upper() if index else "UNKNOWN"
        named = str((index or {}).get("owningConstraint") or (index or {}).get("name"))
        detail = "" if named == decl.name else f"live name {named}"
        if state == "POPULATING":
            detail = f"populating {index.get('populationPercent', '?')}%" if index else detail
        if state not in ("ONLINE", "POPULATING", "FAILED"):
            state, detail = "FAILED", f"index state {state}"
        live = str((index or {}).get("name")) if index else None
        if decl.is_constraint:
            live = str(found[0].get("name"))
        recreate = create_query(SchemaDecl(live or decl.name, decl.kind, decl.label, decl.prop))
        out.append(SchemaState(decl, state, detail, recreate, live))
    return out


class Neo4jGraph:
    """KFM's graph in Neo4j, read and (through run.action) written with Cypher."""

    kind = "neo4j"

    def __init__(self, runner: Runner, location: str, close: Callable[[], None] | None = None):
        self._run = runner
        self.location = location
        self._close = close

    @classmethod
    def connect(cls, uri: str, database: str | None, auth_env: Sequence[str]) -> Neo4jGraph:
        shown = redact_uri(uri)
        try:
            import neo4j
        except ImportError as exc:  # pragma: no cover - the driver is a dependency
            raise GraphUnavailable("the neo4j driver is not installed (pip install neo4j)") from exc
        auth = None
        if auth_env:
            values = [os.environ.get(name) for name in auth_env[:2]]
            if len(values) != 2 or not all(values):
                raise GraphUnavailable(
                    "Neo4j credentials missing: set "
                    f"{' and '.join(auth_env[:2])} in the environment"
                )
            auth = (str(values[0]), str(values[1]))
        try:
            driver = neo4j.GraphDatabase.driver(
                uri, auth=auth, connection_timeout=5.0, connection_acquisition_timeout=5.0
            )
        except (ValueError, neo4j.exceptions.ConfigurationError) as exc:
            raise GraphUnavailable(f"Neo4j URI {shown} rejected: {type(exc).__name__}") from exc
        try:
            driver.verify_connectivity()
        except neo4j.exceptions.AuthError as exc:
            driver.close()
            raise GraphUnavailable(f"Neo4j at {shown} refused the credentials") from exc
        except (neo4j.exceptions.DriverError, neo4j.exceptions.Neo4jError, OSError) as exc:
            driver.close()
            raise GraphUnavailable(f"Neo4j at {shown} unreachable ({type(exc).__name__})") from exc

        def run(query: str, params: dict[str, Any], write: bool) -> list[Any]:
            mode = neo4j.WRITE_ACCESS if write else neo4j.READ_ACCESS
            try:
                with driver.session(database=database, default_access_mode=mode) as session:
                    if write:
                        return list(session.run(query, params))
                    return session.execute_read(lambda tx: list(tx.run(query, params)))
            except (neo4j.exceptions.ServiceUnavailable, neo4j.exceptions.SessionExpired) as exc:
                raise GraphUnavailable(
                    f"Neo4j at {shown} went away ({type(exc).__name__})"
                ) from exc

        return cls(run, shown, driver.close)

    def close(self) -> None:
        if self._close is not None:
            self._close()

    def _read(self, query: str, **params: Any) -> Sequence[Mapping[str, Any]]:
        return self._run(query, params, False)

    def _write(self, query: str, **params: Any) -> Sequence[Mapping[str, Any]]:
        return self._run(query, params, True)

    # -- reads ------------------------------------------------------------------------

    def node_total(self) -> int:
        return int(self._read(Q_NODE_TOTAL)[0]["count"])

    def label_counts(self) -> dict[str, int]:
        return map_counts(self._read(Q_LABEL_COUNTS), "label")

    def rel_type_counts(self) -> dict[str, int]:
        return map_counts(self._read(Q_REL_COUNTS), "type")

    def nodes(self) -> list[NodeRow]:
        return map_nodes(self._read(Q_NODES))

    def rels(self) -> list[RelRow]:
        return map_rels(self._read(Q_RELS))

    def isolated(self, labels: Sequence[str]) -> list[NodeRow]:
        wanted = [identifier(label, "label") for label in labels]
        return map_nodes(self._read(Q_ISOLATED, labels=wanted)) if wanted else []

    def duplicates(self, label: str, prop: str) -> list[tuple[Any, int]]:
        query = Q_DUPLICATES.format(
            label=identifier(label, "label"), prop=identifier(prop, "property")
        )
        return [(plain(r["value"]), int(r["count"])) for r in self._read(query)]

    def schema_state(self, decls: Sequence[SchemaDecl]) -> list[SchemaState]:
        return map_schema(decls, self._read(Q_SHOW_CONSTRAINTS), self._read(Q_SHOW_INDEXES))

    def last_write(self) -> str | None:
        return None  # Neo4j keeps no last-write marker

    def freeze_state(self) -> FreezeState:
        return FreezeState(False, detail=FREEZE_HOWTO)

    def integrity(self) -> list[str]:
        return []  # Neo4j's consistency check is an offline neo4j-admin step: not run here

    def version(self) -> tuple[str, str]:
        return map_version(self._read(Q_COMPONENTS))

    # -- writes -----------------------------------------------------------------------

    def add_label(self, keys: Sequence[str], label: str) -> int:
        query = Q_ADD_LABEL.format(label=identifier(label, "label"))
        return int(self._write(query, keys=sorted(set(keys)))[0]["count"])

    def remove_label(self, keys: Sequence[str], label: str) -> int:
        query = Q_REMOVE_LABEL.format(label=identifier(label, "label"))
        return int(self._write(query, keys=sorted(set(keys)))[0]["count"])

    def merge_nodes(self, rows: Sequence[NodeRow]) -> list[str]:
        created = []
        for row in rows:
            labels = sorted(identifier(label, "label") for label in row.labels)
            if row.key is None or not labels:
                raise ValueError("a merged node needs an id property and a label")
            query = Q_MERGE_NODE.format(
                label=labels[0], labels="".join(f":`{label}`" for label in labels)
            )
            if self._write(query, key=row.key, props={**row.props, "id": row.key}):
                created.append(row.key)
        return created

    def delete_nodes(self, keys: Sequence[str]) -> int:
        return int(self._write(Q_DELETE_NODES, keys=sorted(set(keys)))[0]["count"])

    def merge_rels(self, rows: Sequence[RelRow]) -> list[RelRow]:
        created = []
        for row in rows:
            query = Q_MERGE_REL.format(type=identifier(row.type, "relationship type"))
            if self._write(query, src=row.src, dst=row.dst, props=dict(row.props)):
                created.append(row)
        return created

    def delete_rels(self, rows: Sequence[RelRow]) -> int:
        deleted = 0
        for row in rows:
            query = Q_DELETE_REL.format(type=identifier(row.type, "relationship type"))
            deleted += int(self._write(query, src=row.src, dst=row.dst)[0]["count"])
        return deleted

    def create_schema(self, decl: SchemaDecl) -> dict[str, Any]:
        before = {s.decl.name: s.state for s in self.schema_state([decl])}
        if before.get(decl.name) == "MISMATCHED":
            raise ValueError(f"{decl.describe()}: drop the conflicting index first")
        query = create_query(decl)
        self._write(query)
        return {"name": decl.name, "created": before.get(decl.name) == "MISSING", "query": query}

    def drop_schema(self, name: str) -> bool:
        names = {str(c.get("name")) for c in self._read(Q_SHOW_CONSTRAINTS)}
        indexes = {str(i.get("name")) for i in self._read(Q_SHOW_INDEXES)}
        if name in names:
            self._write(Q_DROP_CONSTRAINT.format(name=name))
            return True
        if name in indexes:
            self._write(Q_DROP_INDEX.format(name=name))
            return True
        return False

    def restore_schema(self, name: str, definition: str) -> bool:
        match = _RESTORABLE.fullmatch(definition)
        if not match or match.group(2) != name:
            raise ValueError(f"refusing to restore {name}: not a CREATE statement for it")
        self.drop_schema(name)
        self._write(definition)
        return True

    def reindex(self, name: str) -> bool:
        raise GraphUnsupported(f"Neo4j rebuilds an index by DROP INDEX + CREATE: repair {name}")

    def freeze(self, reason: str) -> bool:
        raise GraphUnsupported(FREEZE_HOWTO)

    def unfreeze(self, reason: str) -> bool:
        raise GraphUnsupported(FREEZE_HOWTO)
