"""The embedded graph back end: a property graph in one SQLite file.

    nodes(id INTEGER PRIMARY KEY, labels JSON array, props JSON object)
    rels(id INTEGER PRIMARY KEY, type, src -> nodes.id, dst -> nodes.id, props JSON object)
    graph_meta(key, value)            format, last_write_at, freeze:<reason>

A declared UNIQUE constraint on `:Label(prop)` is a real partial expression index,
`CREATE UNIQUE INDEX name ON nodes (json_extract(props, '$.prop')) WHERE instr(labels,
'"Label"') > 0`, so SQLite itself refuses a duplicate. Triggers keep `last_write_at`
current for every writer; a *freeze* adds triggers that abort every INSERT / UPDATE /
DELETE on nodes and rels. Reads use a read-only connection (`mode=ro`). Writes happen in
one `BEGIN IMMEDIATE` transaction each; they are the incident's own recorded actions, so
they pass a freeze: its triggers are dropped and re-created inside the same transaction,
and no other writer ever sees the graph unfrozen.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .model import (
    SCHEMA_NAME_RE,
    FreezeState,
    GraphUnavailable,
    NodeRow,
    RelRow,
    SchemaDecl,
    SchemaState,
    identifier,
)

FORMAT = "kfm-graph-sqlite/1"
NOW_SQL = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
TABLES = ("nodes", "rels")
OPS = ("INSERT", "UPDATE", "DELETE")
SCHEMA_DDL = """
CREATE TABLE graph_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE nodes (
  id INTEGER PRIMARY KEY,
  labels TEXT NOT NULL CHECK (json_valid(labels) AND json_type(labels) = 'array'),
  props TEXT NOT NULL CHECK (json_valid(props) AND json_type(props) = 'object')
);
CREATE TABLE rels (
  id INTEGER PRIMARY KEY,
  type TEXT NOT NULL,
  src INTEGER NOT NULL REFERENCES nodes (id),
  dst INTEGER NOT NULL REFERENCES nodes (id),
  props TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(props) AND json_type(props) = 'object')
);
CREATE INDEX graph_node_key ON nodes (json_extract(props, '$.id'));
CREATE INDEX graph_rel_src ON rels (src, type);
CREATE INDEX graph_rel_dst ON rels (dst, type);
"""


def _initialise(conn: sqlite3.Connection) -> None:
    """Tables, lookup indexes, metadata and the last-write triggers, in one transaction."""
    conn.execute("BEGIN")
    for statement in SCHEMA_DDL.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("INSERT INTO graph_meta (key, value) VALUES ('format', ?)", (FORMAT,))
    conn.execute(
        "INSERT INTO graph_meta (key, value) VALUES ('last_write_at', "  # noqa: S608 - constant
        f"{NOW_SQL})"
    )
    for table in TABLES:
        for op in OPS:
            touch = f"UPDATE graph_meta SET value = {NOW_SQL} WHERE key = 'last_write_at'"  # noqa: S608
            conn.execute(  # table / op / NOW_SQL are constants of this module
                f"CREATE TRIGGER graph_touch_{table}_{op.lower()} AFTER {op} ON {table} "
                f"BEGIN {touch}; END"
            )
    conn.execute("COMMIT")


FREEZE_MESSAGE = "KFM graph is frozen for an incident: writes are blocked (graph_meta freeze:*)"
FREEZE_TRIGGERS = tuple(f"kfm_freeze_{table}_{op.lower()}" for table in TABLES for op in OPS)
_RESTORABLE_RE = re.compile(r'CREATE (UNIQUE )?INDEX "?([a-z][a-z0-9_]*)"? ON (nodes|rels) \(')


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _key(value: Any) -> str | None:
    return None if value is None else str(value)


def declared_sql(decl: SchemaDecl) -> str:
    """The exact index a declaration means in this back end."""
    label = identifier(decl.label, "label")
    prop = identifier(decl.prop, "property")
    unique = "UNIQUE " if decl.is_constraint else ""
    return (
        f"CREATE {unique}INDEX \"{decl.name}\" ON nodes (json_extract(props, '$.{prop}')) "
        f"WHERE instr(labels, '\"{label}\"') > 0"
    )


def _normal(sql: str) -> str:
    return " ".join(sql.replace("IF NOT EXISTS ", "").split())


def _check_name(name: str) -> str:
    if not SCHEMA_NAME_RE.fullmatch(name) or name.startswith(("graph_", "sqlite_", "kfm_freeze")):
        raise ValueError(f"{name!r} is not a declared schema object name")
    return name


class SqliteGraph:
    """A KFM property graph in a SQLite file (or in memory, for scratch assessments)."""

    kind = "sqlite"

    def __init__(self, conn: sqlite3.Connection, path: Path | None, display: str) -> None:
        self._conn = conn
        self.path = path
        self.location = display
        self.durable = True  # builders of throw-away files may turn fsync off

    # -- opening ----------------------------------------------------------------------

    @staticmethod
    def _ro_uri(path: Path) -> str:
        return f"file:{urllib.parse.quote(str(path))}?mode=ro"

    @classmethod
    def open(cls, path: Path, display: str | None = None) -> SqliteGraph:
        shown = display or path.name
        if not path.is_file():
            raise GraphUnavailable(f"graph file {shown} not found")
        conn = sqlite3.connect(cls._ro_uri(path), uri=True, isolation_level=None)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise GraphUnavailable(f"graph file {shown} cannot be read: {exc}") from exc
        if not {"nodes", "rels", "graph_meta"} <= tables:
            conn.close()
            raise GraphUnavailable(f"{shown} is not a KFM SQLite graph (no nodes/rels tables)")
        return cls(conn, path, shown)

    @classmethod
    def create(cls, path: Path, display: str | None = None) -> SqliteGraph:
        """A new, empty graph file (refuses to touch an existing file)."""
        if path.exists():
            raise FileExistsError(f"{path} exists: a graph is only created in a new file")
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            _initialise(conn)
        finally:
            conn.close()
        return cls.open(path, display)

    @classmethod
    def scratch(cls) -> SqliteGraph:
        """An in-memory graph (assessing supplied record graphs; never persisted)."""
        conn = sqlite3.connect(":memory:", isolation_level=None)
        _initialise(conn)
        return cls(conn, None, ":memory:")

    def close(self) -> None:
        self._conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One maintenance transaction; passes a freeze and restores it before commit."""
        if self.path is None:
            conn = self._conn
        else:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA secure_delete = ON")  # no stale bytes left in pages
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'OFF'}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for name in FREEZE_TRIGGERS:
                    conn.execute(f"DROP TRIGGER IF EXISTS {name}")
                yield conn
                if conn.execute("SELECT 1 FROM graph_meta WHERE key LIKE 'freeze:%'").fetchone():
                    _create_freeze_triggers(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            if conn is not self._conn:
                conn.close()

    # -- reads ------------------------------------------------------------------------

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._conn.execute(sql, params))

    def node_total(self) -> int:
        return int(self._rows("SELECT count(*) FROM nodes")[0][0])

    def label_counts(self) -> dict[str, int]:
        rows = self._rows(
            "SELECT j.value, count(*) FROM nodes, json_each(nodes.labels) AS j "
            "GROUP BY j.value ORDER BY j.value"
        )
        return {str(label): int(count) for label, count in rows}

    def rel_type_counts(self) -> dict[str, int]:
        rows = self._rows("SELECT type, count(*) FROM rels GROUP BY type ORDER BY type")
        return {str(kind): int(count) for kind, count in rows}

    @staticmethod
    def _node(labels: str, props: str) -> NodeRow:
        values: dict[str, Any] = json.loads(props)
        return NodeRow(_key(values.get("id")), tuple(sorted(json.loads(labels))), values)

    def nodes(self) -> list[NodeRow]:
        return [
            self._node(*row) for row in self._rows("SELECT labels, props FROM nodes ORDER BY id")
        ]

    def rels(self) -> list[RelRow]:
        rows = self._rows(
            "SELECT r.type, json_extract(s.props, '$.id'), json_extract(t.props, '$.id'), r.props "
            "FROM rels AS r JOIN nodes AS s ON s.id = r.src JOIN nodes AS t ON t.id = r.dst "
            "ORDER BY r.id"
        )
        return [RelRow(str(t), _key(s), _key(d), json.loads(p)) for t, s, d, p in rows]

    def isolated(self, labels: Sequence[str]) -> list[NodeRow]:
        wanted = [identifier(label, "label") for label in labels]
        if not wanted:
            return []
        marks = ", ".join("?" for _ in wanted)
        rows = self._rows(
            "SELECT labels, props FROM nodes AS n WHERE EXISTS (SELECT 1 FROM "  # noqa: S608
            f"json_each(n.labels) AS j WHERE j.value IN ({marks})) "
            "AND NOT EXISTS (SELECT 1 FROM rels AS r WHERE r.src = n.id) "
            "AND NOT EXISTS (SELECT 1 FROM rels AS r WHERE r.dst = n.id) "
            "ORDER BY json_extract(props, '$.id'), id",
            wanted,
        )
        return [self._node(*row) for row in rows]

    def duplicates(self, label: str, prop: str) -> list[tuple[Any, int]]:
        label, prop = identifier(label, "label"), identifier(prop, "property")
        rows = self._rows(
            # label and prop are validated identifiers (they cannot be parameters here)
            f"SELECT json_extract(props, '$.{prop}') AS v, count(*) FROM nodes "  # noqa: S608
            f"WHERE instr(labels, '\"{label}\"') > 0 AND v IS NOT NULL "
            "GROUP BY v HAVING count(*) > 1 ORDER BY v"
        )
        return [(value, int(count)) for value, count in rows]

    def meta(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self._rows("SELECT key, value FROM graph_meta")}

    def last_write(self) -> str | None:
        return self.meta().get("last_write_at")

    def freeze_state(self) -> FreezeState:
        reasons = tuple(
            sorted(k.removeprefix("freeze:") for k in self.meta() if k.startswith("freeze:"))
        )
        triggers = {
            r[0] for r in self._rows("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        }
        enforced = all(name in triggers for name in FREEZE_TRIGGERS)
        partial = not enforced and any(name in triggers for name in FREEZE_TRIGGERS)
        detail = "write-blocking triggers on nodes and rels" if enforced else ""
        if reasons and not enforced:
            detail = "freeze recorded but its triggers are missing: writes are NOT blocked"
        elif partial:
            detail = "some freeze triggers are missing: writes are only partly blocked"
        return FreezeState(True, reasons, enforced, detail)

    def version(self) -> tuple[str, str]:
        return "SQLITE", sqlite3.sqlite_version

    def integrity(self) -> list[str]:
        """`PRAGMA integrity_check` messages (empty when the file is sound)."""
        try:
            lines = [str(r[0]) for r in self._rows("PRAGMA integrity_check")]
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        return [] if lines == ["ok"] else lines

    def schema_state(self, decls: Sequence[SchemaDecl]) -> list[SchemaState]:
        live = {
            str(name): str(sql or "")
            for name, sql in self._rows(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'nodes'"
            )
        }
        problems = self.integrity()
        out = []
        for decl in decls:
            sql = live.get(decl.name)
            if sql is None:
                out.append(SchemaState(decl, "MISSING", "no index with this name"))
                continue
            if _normal(sql) != _normal(declared_sql(decl)):
                what = "not UNIQUE" if decl.is_constraint and "UNIQUE" not in sql else "differs"
                out.append(SchemaState(decl, "MISMATCHED", f"live index {what}", sql, decl.name))
                continue
            broken = [p for p in problems if re.search(rf"\b{re.escape(decl.name)}\b", p)]
            if broken:
                out.append(SchemaState(decl, "FAILED", broken[0], sql, decl.name))
                continue
            out.append(SchemaState(decl, "ONLINE", "", sql, decl.name))
        return out

    # -- writes -----------------------------------------------------------------------

    @staticmethod
    def _node_ids(conn: sqlite3.Connection, key: str) -> list[tuple[int, list[str]]]:
        rows = conn.execute(
            "SELECT id, labels FROM nodes WHERE json_extract(props, '$.id') = ? ORDER BY id",
            (key,),
        )
        return [(int(i), list(json.loads(labels))) for i, labels in rows]

    def _relabel(self, keys: Sequence[str], label: str, add: bool) -> int:
        label = identifier(label, "label")
        changed = 0
        with self._write() as conn:
            for key in sorted(set(keys)):
                for node_id, labels in self._node_ids(conn, key):
                    if (label in labels) == add:
                        continue
                    new = sorted({*labels, label}) if add else [x for x in labels if x != label]
                    conn.execute("UPDATE nodes SET labels = ? WHERE id = ?", (_dumps(new), node_id))
                    changed += 1
        return changed

    def add_label(self, keys: Sequence[str], label: str) -> int:
        return self._relabel(keys, label, add=True)

    def remove_label(self, keys: Sequence[str], label: str) -> int:
        return self._relabel(keys, label, add=False)

    def merge_nodes(self, rows: Sequence[NodeRow]) -> list[str]:
        """Create each node unless one with its id and first label exists (MERGE)."""
        created = []
        with self._write() as conn:
            for row in rows:
                if row.key is None:
                    raise ValueError("a merged node needs an id property")
                labels = sorted(identifier(label, "label") for label in row.labels)
                existing = self._node_ids(conn, row.key)
                if any(not labels or labels[0] in have for _, have in existing):
                    continue
                props = {**row.props, "id": row.key}
                conn.execute(
                    "INSERT INTO nodes (labels, props) VALUES (?, ?)",
                    (_dumps(labels), _dumps(props)),
                )
                created.append(row.key)
        return created

    def delete_nodes(self, keys: Sequence[str]) -> int:
        """Delete nodes by id; a node that still has relationships is left alone."""
        deleted = 0
        with self._write() as conn:
            for key in sorted(set(keys)):
                for node_id, _ in self._node_ids(conn, key):
                    linked = conn.execute(
                        "SELECT 1 FROM rels WHERE src = ?1 OR dst = ?1 LIMIT 1", (node_id,)
                    ).fetchone()
                    if linked:
                        continue
                    conn.execute("DELETE FROM nodes WHERE id = ?", (node_id,))
                    deleted += 1
        return deleted

    def merge_rels(self, rows: Sequence[RelRow]) -> list[RelRow]:
        """Create each relationship unless the same (type, src, dst) exists (MERGE)."""
        created = []
        with self._write() as conn:
            for row in rows:
                kind = identifier(row.type, "relationship type")
                src = self._node_ids(conn, str(row.src))
                dst = self._node_ids(conn, str(row.dst))
                if not src or not dst:
                    raise ValueError(f"cannot link {row.src} -[{kind}]-> {row.dst}: node missing")
                exists = conn.execute(
                    "SELECT 1 FROM rels WHERE type = ? AND src = ? AND dst = ?",
                    (kind, src[0][0], dst[0][0]),
                ).fetchone()
                if exists:
                    continue
                conn.execute(
                    "INSERT INTO rels (type, src, dst, props) VALUES (?, ?, ?, ?)",
                    (kind, src[0][0], dst[0][0], _dumps(row.props)),
                )
                created.append(RelRow(kind, row.src, row.dst, dict(row.props)))
        return created

    def delete_rels(self, rows: Sequence[RelRow]) -> int:
        """Delete one relationship per row (the newest match)."""
        deleted = 0
        with self._write() as conn:
            for row in rows:
                found = conn.execute(
                    "SELECT max(r.id) FROM rels AS r JOIN nodes AS s ON s.id = r.src "
                    "JOIN nodes AS t ON t.id = r.dst WHERE r.type = ? "
                    "AND json_extract(s.props, '$.id') = ? AND json_extract(t.props, '$.id') = ?",
                    (row.type, row.src, row.dst),
                ).fetchone()
                if found and found[0] is not None:
                    conn.execute("DELETE FROM rels WHERE id = ?", (found[0],))
                    deleted += 1
        return deleted

    def _index_sql(self, conn: sqlite3.Connection, name: str) -> str | None:
        row = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
        ).fetchone()
        return None if row is None else str(row[0])

    def create_schema(self, decl: SchemaDecl) -> dict[str, Any]:
        """Create the declared index; `created` False when it is already there."""
        name = _check_name(decl.name)
        sql = declared_sql(decl)
        with self._write() as conn:
            live = self._index_sql(conn, name)
            if live is not None:
                if _normal(live) != _normal(sql):
                    raise ValueError(f"index {name} exists with another definition: drop it first")
                return {"name": name, "created": False}
            conn.execute(sql)
        return {"name": name, "created": True, "definition": sql}

    def apply_schema(self, decls: Sequence[SchemaDecl]) -> None:
        """Builders only: create every declared index in one transaction."""
        with self._write() as conn:
            for decl in decls:
                _check_name(decl.name)
                conn.execute(declared_sql(decl).replace("INDEX ", "INDEX IF NOT EXISTS ", 1))

    def drop_schema(self, name: str) -> bool:
        name = _check_name(name)
        with self._write() as conn:
            existed = self._index_sql(conn, name) is not None
            conn.execute(f'DROP INDEX IF EXISTS "{name}"')
        return existed

    def restore_schema(self, name: str, definition: str) -> bool:
        """Put back an index exactly as it was (undo of a re-creation)."""
        name = _check_name(name)
        match = _RESTORABLE_RE.match(definition)
        if not match or match.group(2) != name or ";" in definition:
            raise ValueError(f"refusing to restore {name}: not a CREATE INDEX for it")
        with self._write() as conn:
            if _normal(self._index_sql(conn, name) or "") == _normal(definition):
                return False
            conn.execute(f'DROP INDEX IF EXISTS "{name}"')
            conn.execute(definition)
        return True

    def reindex(self, name: str) -> bool:
        """Rebuild one existing index from the table (REINDEX): content is unchanged."""
        if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", name):
            raise ValueError(f"{name!r} is not an index name")
        with self._write() as conn:
            if self._index_sql(conn, name) is None:
                return False
            conn.execute(f'REINDEX "{name}"')
        return True

    def freeze(self, reason: str) -> bool:
        """Block every data write (idempotent); the reason is kept in graph_meta."""
        key = f"freeze:{reason}"
        enforced = self.freeze_state().enforced
        with self._write() as conn:
            had = conn.execute("SELECT 1 FROM graph_meta WHERE key = ?", (key,)).fetchone()
            if not had:
                sql = f"INSERT INTO graph_meta (key, value) VALUES (?, {NOW_SQL})"  # noqa: S608
                conn.execute(sql, (key,))
        return not had or not enforced

    def unfreeze(self, reason: str) -> bool:
        """Lift this reason's freeze; writes unblock when no other reason remains."""
        key = f"freeze:{reason}"
        with self._write() as conn:
            cursor = conn.execute("DELETE FROM graph_meta WHERE key = ?", (key,))
            removed = cursor.rowcount > 0
        return removed

    def insert_nodes(self, rows: Sequence[NodeRow]) -> None:
        """Builders only (sandbox, exports, scratch assessments): plain bulk insert."""
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO nodes (labels, props) VALUES (?, ?)",
                [
                    (_dumps(sorted(identifier(x, "label") for x in row.labels)), _dumps(row.props))
                    for row in rows
                ],
            )

    def insert_rels(self, rows: Sequence[RelRow]) -> None:
        """Builders only: bulk insert; endpoints are the first node with each id."""
        with self._write() as conn:
            ids: dict[str, int] = {}
            for node_id, key in conn.execute(
                "SELECT id, json_extract(props, '$.id') FROM nodes ORDER BY id DESC"
            ):
                ids[str(key)] = int(node_id)
            values = []
            for row in rows:
                if str(row.src) not in ids or str(row.dst) not in ids:
                    raise ValueError(f"cannot link {row.src} -[{row.type}]-> {row.dst}")
                kind = identifier(row.type, "relationship type")
                values.append((kind, ids[str(row.src)], ids[str(row.dst)], _dumps(row.props)))
            conn.executemany("INSERT INTO rels (type, src, dst, props) VALUES (?, ?, ?, ?)", values)

    def set_meta(self, key: str, value: str) -> None:
        """Builders only (sandbox, exports): set a graph_meta value."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO graph_meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def compact(self) -> None:
        """VACUUM: rebuild the file from its content (builders: deterministic bytes)."""
        if self.path is None:
            return
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'OFF'}")
            conn.execute("VACUUM")
        finally:
            conn.close()

    def backup_to(self, dest: Path) -> None:
        """Copy the whole database into a new file with the sqlite3 backup API."""
        if dest.exists():
            raise FileExistsError(f"{dest} exists: backups never overwrite a file")
        if self.path is not None and dest.resolve() == self.path.resolve():
            raise ValueError("refusing to back up a graph onto itself")
        target = sqlite3.connect(dest, isolation_level=None)
        try:
            self._conn.backup(target)
        finally:
            target.close()


def _create_freeze_triggers(conn: sqlite3.Connection) -> None:
    for table in TABLES:
        for op in OPS:
            conn.execute(
                f"CREATE TRIGGER IF NOT EXISTS kfm_freeze_{table}_{op.lower()} BEFORE {op} "
                f"ON {table} BEGIN SELECT RAISE(ABORT, '{FREEZE_MESSAGE}'); END"
            )
