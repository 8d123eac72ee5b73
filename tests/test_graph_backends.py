"""The Cypher back end without a Neo4j server (none can be installed here).

What is tested: back-end selection from the URI; the lazy driver import; a closed loopback
port giving a one-line "unreachable" (so runbooks HOLD); credentials only from the
environment, never printed; every query text (reads never write, values are
parameters, identifiers are validated); the mapping of `neo4j.Record` objects built
locally (counts, nodes with driver temporal values, relationships, SHOW CONSTRAINTS /
SHOW INDEXES of Neo4j 4.4 and 5.x, dbms.components); and the graph checks run end to end
through `Neo4jGraph` on a runner that answers each exact query text from a SQLite graph,
giving the same findings as the SQLite back end. What is not tested: Cypher semantics on
a real server.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import neo4j
import pytest
import yaml
from neo4j.time import DateTime

from kfm_runbooks.checks.graph import counts as graph_counts
from kfm_runbooks.checks.graph import db as graphdb
from kfm_runbooks.checks.graph import neo4j_backend as graph_neo4j
from kfm_runbooks.checks.graph import orphans as graph_orphans
from kfm_runbooks.checks.graph import schema as graph_schema
from kfm_runbooks.checks.graph.db import GraphConfig, SchemaDecl
from kfm_runbooks.checks.graph.neo4j_backend import Neo4jGraph
from kfm_runbooks.checks.graph.sqlite_backend import SqliteGraph
from kfm_runbooks.errors import TargetError
from kfm_runbooks.sandbox.parts import catalog as catalog_part
from kfm_runbooks.sandbox.parts import graph as graph_part
from kfm_runbooks.target import load_target

READ_QUERIES = [
    graph_neo4j.Q_NODE_TOTAL,
    graph_neo4j.Q_LABEL_COUNTS,
    graph_neo4j.Q_REL_COUNTS,
    graph_neo4j.Q_NODES,
    graph_neo4j.Q_RELS,
    graph_neo4j.Q_ISOLATED,
    graph_neo4j.Q_DUPLICATES,
    graph_neo4j.Q_SHOW_CONSTRAINTS,
    graph_neo4j.Q_SHOW_INDEXES,
    graph_neo4j.Q_COMPONENTS,
]
WRITE_CLAUSES = re.compile(r"\b(CREATE|MERGE|SET|DELETE|REMOVE|DROP|DETACH|LOAD)\b")


def _target(tmp_path: Path, graph: dict[str, Any]) -> GraphConfig:
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "graph": graph}), encoding="utf-8")
    return GraphConfig.from_target(load_target(path))


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- selection, laziness, failure ------------------------------------------------------


def test_uri_selects_the_back_end(tmp_path: Path) -> None:
    assert _target(tmp_path, {"uri": "bolt://graph.kfm.internal:7687"}).backend == "neo4j"
    assert _target(tmp_path, {"uri": "neo4j+s://graph.kfm.internal"}).backend == "neo4j"
    config = _target(tmp_path, {"uri": "graph/graph.sqlite"})
    assert config.backend == "sqlite" and config.location == "graph/graph.sqlite"
    (tmp_path / "x.json").write_text("{}")
    assert _target(tmp_path, {"closure_cases": "x.json"}).backend is None
    with pytest.raises(TargetError, match="scheme"):
        _target(tmp_path, {"uri": "http://graph.kfm.internal:7474"})
    assert graphdb.redact_uri("bolt://neo:s3cret@db:7687/x") == "bolt://db:7687/x"


def test_the_driver_is_imported_only_for_a_bolt_uri(tmp_path: Path) -> None:
    catalog_part.build(tmp_path, True)
    graph_part.build(tmp_path, True)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from kfm_runbooks.checks.graph import orphans as graph_orphans, db as graphdb\n"
        f"config = graphdb.GraphConfig(Path({str(tmp_path)!r}), None, "
        f"Path({str(tmp_path / 'graph/graph.sqlite')!r}))\n"
        "db = graphdb.connect(config)\n"
        "assert graph_orphans.scan(db).findings == []\n"
        "print('neo4j' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_unreachable_server_is_one_line_and_no_retry_loop(tmp_path: Path) -> None:
    port = _closed_port()
    config = _target(tmp_path, {"uri": f"bolt://127.0.0.1:{port}"})
    answer: list[tuple[Any, str | None]] = []
    worker = threading.Thread(target=lambda: answer.append(graphdb.try_connect(config)))
    worker.start()
    worker.join(timeout=300)  # a hang guard (the driver's retry loop), not a speed bound
    assert not worker.is_alive(), "try_connect kept retrying a closed port"
    [(db, why)] = answer
    assert db is None
    assert why == f"Neo4j at bolt://127.0.0.1:{port} unreachable (ServiceUnavailable)"


def test_credentials_come_from_the_environment_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KFM_TEST_NEO4J_USER", raising=False)
    monkeypatch.setenv("KFM_TEST_NEO4J_PASSWORD", "hunter2-not-printed")
    config = _target(
        tmp_path,
        {
            "uri": f"bolt://127.0.0.1:{_closed_port()}",
            "auth_env": ["KFM_TEST_NEO4J_USER", "KFM_TEST_NEO4J_PASSWORD"],
        },
    )
    db, why = graphdb.try_connect(config)
    assert db is None
    assert why == (
        "Neo4j credentials missing: set KFM_TEST_NEO4J_USER and KFM_TEST_NEO4J_PASSWORD "
        "in the environment"
    )
    monkeypatch.setenv("KFM_TEST_NEO4J_USER", "neo4j")
    _, why = graphdb.try_connect(config)
    assert "unreachable" in why and "hunter2" not in why


# --- query texts -----------------------------------------------------------------------


@pytest.mark.parametrize("query", READ_QUERIES)
def test_read_queries_never_write(query: str) -> None:
    assert not WRITE_CLAUSES.search(query), query


def test_write_queries_take_values_as_parameters() -> None:
    for query, params in (
        (graph_neo4j.Q_ADD_LABEL, {"$keys"}),
        (graph_neo4j.Q_REMOVE_LABEL, {"$keys"}),
        (graph_neo4j.Q_MERGE_NODE, {"$key", "$props"}),
        (graph_neo4j.Q_DELETE_NODES, {"$keys"}),
        (graph_neo4j.Q_MERGE_REL, {"$src", "$dst", "$props"}),
        (graph_neo4j.Q_DELETE_REL, {"$src", "$dst"}),
    ):
        assert set(re.findall(r"\$\w+", query)) == params, query
    assert graph_neo4j.Q_DELETE_NODES.count("NOT (n)--()") == 1  # never DETACH DELETE
    decl = SchemaDecl("kfm_item_id", "UNIQUE", "Item", "id")
    assert graph_neo4j.create_query(decl) == (
        "CREATE CONSTRAINT `kfm_item_id` IF NOT EXISTS FOR (n:`Item`) REQUIRE n.`id` IS UNIQUE"
    )
    assert graph_neo4j.create_query(SchemaDecl("kfm_item_dt", "RANGE", "Item", "datetime")) == (
        "CREATE INDEX `kfm_item_dt` IF NOT EXISTS FOR (n:`Item`) ON (n.`datetime`)"
    )


def test_hostile_identifiers_never_reach_cypher() -> None:
    sent: list[str] = []
    db = Neo4jGraph(lambda q, p, w: sent.append(q) or [], "bolt://x")
    for bad in ("Item`) DETACH DELETE n //", "a b", ""):
        with pytest.raises(ValueError, match="identifier"):
            db.add_label(["k"], bad)
        with pytest.raises(ValueError, match="identifier"):
            db.duplicates("Item", bad)
        with pytest.raises(ValueError, match="identifier"):
            db.isolated([bad])
    with pytest.raises(ValueError, match="refusing"):
        db.restore_schema("kfm_item_id", "MATCH (n) DETACH DELETE n")
    with pytest.raises(graphdb.GraphUnsupported, match="ALTER DATABASE"):
        db.freeze("INC-1:x")
    assert sent == []


# --- record mapping --------------------------------------------------------------------


def test_records_map_to_rows() -> None:
    labels = [
        neo4j.Record({"label": "Item", "count": 6}),
        neo4j.Record({"label": "Asset", "count": 3}),
    ]
    assert graph_neo4j.map_counts(labels, "label") == {"Item": 6, "Asset": 3}
    stamp = DateTime(2026, 6, 1, 0, 0, 0)
    [node] = graph_neo4j.map_nodes(
        [neo4j.Record({"labels": ["Item", "Quarantined"], "props": {"id": "a", "at": stamp}})]
    )
    assert node.key == "a" and node.labels == ("Item", "Quarantined")
    assert node.props == {"id": "a", "at": "2026-06-01T00:00:00.000000000"}
    assert node.record_type == "ITEM"
    [rel] = graph_neo4j.map_rels(
        [neo4j.Record({"type": "ITEM", "src": "c", "dst": "a", "props": {"target_type": "ITEM"}})]
    )
    assert (rel.type, rel.src, rel.dst, rel.props) == ("ITEM", "c", "a", {"target_type": "ITEM"})
    components = [
        neo4j.Record({"name": "Neo4j Kernel", "versions": ["5.20.0"], "edition": "community"})
    ]
    assert graph_neo4j.map_version(components) == ("NEO4J", "5.20.0 (community)")


DECLS = [
    SchemaDecl("kfm_item_id", "UNIQUE", "Item", "id"),
    SchemaDecl("kfm_asset_id", "UNIQUE", "Asset", "id"),
    SchemaDecl("kfm_agent_id", "UNIQUE", "Agent", "id"),
    SchemaDecl("kfm_source_id", "UNIQUE", "Source", "id"),
    SchemaDecl("kfm_item_datetime", "RANGE", "Item", "datetime"),
]


def _constraint(name: str, label: str, kind: str, owned: str, key: str) -> neo4j.Record:
    return neo4j.Record(
        {"name": name, "type": kind, "labelsOrTypes": [label], "properties": ["id"], key: owned}
    )


def _index(name: str, label: str, prop: str, state: str, owner: str | None) -> neo4j.Record:
    return neo4j.Record(
        {
            "name": name,
            "type": "RANGE",
            "state": state,
            "populationPercent": 40.0,
            "labelsOrTypes": [label],
            "properties": [prop],
            "owningConstraint": owner,
        }
    )


@pytest.mark.parametrize(
    ("kind", "owned_key"),
    [("NODE_PROPERTY_UNIQUENESS", "ownedIndex"), ("UNIQUENESS", "ownedIndexId")],
)
def test_show_constraints_and_indexes_map_to_states(kind: str, owned_key: str) -> None:
    constraints = [
        _constraint("kfm_item_id", "Item", kind, "kfm_item_id", owned_key),
        _constraint("constraint_8f2", "Asset", kind, "constraint_8f2", owned_key),
    ]
    indexes = [
        _index("kfm_item_id", "Item", "id", "ONLINE", "kfm_item_id"),
        _index("constraint_8f2", "Asset", "id", "FAILED", "constraint_8f2"),
        _index("agent_id_idx", "Agent", "id", "ONLINE", None),
        _index("kfm_item_datetime", "Item", "datetime", "POPULATING", None),
    ]
    states = {s.decl.name: s for s in graph_neo4j.map_schema(DECLS, constraints, indexes)}
    assert {n: s.state for n, s in states.items()} == {
        "kfm_item_id": "ONLINE",
        "kfm_asset_id": "FAILED",
        "kfm_agent_id": "MISMATCHED",
        "kfm_source_id": "MISSING",
        "kfm_item_datetime": "POPULATING",
    }
    assert states["kfm_asset_id"].live_name == "constraint_8f2"
    assert states["kfm_asset_id"].detail == "live name constraint_8f2"
    assert states["kfm_agent_id"].live_name == "agent_id_idx"
    assert states["kfm_item_datetime"].detail == "populating 40.0%"
    findings = graph_schema.state_findings(list(states.values()))
    assert [(f.code, f.severity) for f in findings] == [
        ("GRAPH_CONSTRAINT_FAILED", "blocking"),
        ("GRAPH_CONSTRAINT_MISMATCHED", "blocking"),
        ("GRAPH_CONSTRAINT_MISSING", "blocking"),
        ("GRAPH_INDEX_POPULATING", "hold"),
    ]


# --- the checks through Neo4jGraph, on a runner answering each exact query -------------


class CypherFromSqlite:
    """Answers the back end's exact query texts from a SQLite graph, as neo4j.Records.

    Tests what Neo4jGraph sends (text, parameters, read/write) and how it maps what comes
    back; it does not execute Cypher (no server can be installed here)."""

    def __init__(self, db: SqliteGraph) -> None:
        self.db = db
        self.sent: list[tuple[str, dict[str, Any], bool]] = []

    def __call__(
        self, query: str, params: dict[str, Any], write: bool
    ) -> Sequence[Mapping[str, Any]]:
        self.sent.append((query, params, write))
        db, q = self.db, graph_neo4j
        rec = neo4j.Record
        if query == q.Q_NODE_TOTAL:
            return [rec({"count": db.node_total()})]
        if query == q.Q_LABEL_COUNTS:
            return [rec({"label": k, "count": v}) for k, v in db.label_counts().items()]
        if query == q.Q_REL_COUNTS:
            return [rec({"type": k, "count": v}) for k, v in db.rel_type_counts().items()]
        if query == q.Q_NODES:
            return [rec({"labels": list(n.labels), "props": n.props}) for n in db.nodes()]
        if query == q.Q_RELS:
            return [
                rec({"type": r.type, "src": r.src, "dst": r.dst, "props": r.props})
                for r in db.rels()
            ]
        if query == q.Q_ISOLATED:
            return [
                rec({"labels": list(n.labels), "props": n.props})
                for n in db.isolated(params["labels"])
            ]
        label = re.search(r"n:`(\w+)`", query)
        if label and query == q.Q_ADD_LABEL.format(label=label.group(1)):
            assert write
            return [rec({"count": db.add_label(params["keys"], label.group(1))})]
        if label and query == q.Q_REMOVE_LABEL.format(label=label.group(1)):
            assert write
            return [rec({"count": db.remove_label(params["keys"], label.group(1))})]
        kind = re.search(r"\[r:`(\w+)`\]", query)
        if kind and query == q.Q_MERGE_REL.format(type=kind.group(1)):
            assert write
            row = graphdb.RelRow(kind.group(1), params["src"], params["dst"], params["props"])
            return [rec({"type": r.type}) for r in db.merge_rels([row])]
        if kind and query == q.Q_DELETE_REL.format(type=kind.group(1)):
            row = graphdb.RelRow(kind.group(1), params["src"], params["dst"])
            return [rec({"count": db.delete_rels([row])})]
        raise AssertionError(f"unexpected query: {query}")


@pytest.fixture
def twins(tmp_path: Path) -> tuple[SqliteGraph, Neo4jGraph, CypherFromSqlite]:
    catalog_part.build(tmp_path, False)
    graph_part.build(tmp_path, False)
    sqlite_side = SqliteGraph.open(tmp_path / "graph" / "graph.sqlite")
    copy = tmp_path / "copy.sqlite"
    sqlite_side.backup_to(copy)
    runner = CypherFromSqlite(SqliteGraph.open(copy))
    return sqlite_side, Neo4jGraph(runner, "bolt://test:7687"), runner


def test_both_back_ends_give_the_same_findings(
    twins: tuple[SqliteGraph, Neo4jGraph, CypherFromSqlite],
) -> None:
    sqlite_side, neo4j_side, runner = twins
    scans = [graph_orphans.scan(db, "kfm-sandbox") for db in (sqlite_side, neo4j_side)]
    assert scans[0].findings == scans[1].findings and len(scans[0].findings) == 2
    assert graphdb.graph_digest(sqlite_side) == graphdb.graph_digest(neo4j_side)
    assert sqlite_side.label_counts() == neo4j_side.label_counts()
    assert sqlite_side.rel_type_counts() == neo4j_side.rel_type_counts()
    snapshot = graph_counts.Snapshot(
        "t", {"labels": {"Asset": 6}, "relationship_types": {}}, graph_counts.Tolerance(1, 10), {}
    )
    rows = [
        graph_counts.compare(snapshot, graph_counts.live_counts(db.label_counts(), {}))
        for db in (sqlite_side, neo4j_side)
    ]
    assert rows[0] == rows[1]
    assert all(not write for _, _, write in runner.sent)  # triage sent reads only
    assert {"labels": ["Activity", "Agent", "Source"]} in [p for _, p, _ in runner.sent]


def test_containment_and_recovery_through_cypher(
    twins: tuple[SqliteGraph, Neo4jGraph, CypherFromSqlite],
) -> None:
    _, db, runner = twins
    scan = graph_orphans.scan(db, "kfm-sandbox")
    keys = sorted(scan.orphan_ids + scan.isolated_ids)
    assert graph_orphans.quarantine(db, keys)["changed"] == 2
    assert graph_orphans.quarantine(db, keys)["changed"] == 0
    [entry] = graph_orphans.relink_plan(db, "kfm-sandbox")
    result = graph_orphans.relink(db, entry)
    assert [r["type"] for r in result["created"]] == ["ITEM", "COLLECTION"]
    assert graph_orphans.scan(db, "kfm-sandbox").assessment["outcome"] == "LINK_GRAPH_CLOSED"
    writes = [(q, p) for q, p, w in runner.sent if w]
    assert [q.split()[0] for q, _ in writes] == ["UNWIND", "UNWIND", "MATCH", "MATCH", "UNWIND"]
    assert writes[0][1] == {"keys": keys}
    undone = graph_orphans.unlink(db, entry.item, result["created"], True)
    assert undone == {"item": entry.item, "deleted": 2, "requarantined": 1}


class SchemaServer:
    """A scripted stand-in for SHOW / CREATE / DROP of constraints and indexes."""

    CREATE = re.compile(
        r"CREATE (CONSTRAINT|INDEX) `(\w+)` IF NOT EXISTS FOR \(n:`(\w+)`\) "
        r"(?:REQUIRE|ON) \(?n\.`(\w+)`\)?"
    )

    def __init__(self) -> None:
        self.constraints = [
            _constraint("constraint_8f2", "Asset", "UNIQUENESS", "x", "ownedIndexId")
        ]
        self.indexes = [
            _index("constraint_8f2", "Asset", "id", "FAILED", "constraint_8f2"),
            _index("agent_id_idx", "Agent", "id", "ONLINE", None),
        ]
        self.sent: list[str] = []

    def __call__(self, query: str, params: dict[str, Any], write: bool) -> list[neo4j.Record]:
        if query == graph_neo4j.Q_SHOW_CONSTRAINTS:
            return list(self.constraints)
        if query == graph_neo4j.Q_SHOW_INDEXES:
            return list(self.indexes)
        assert write, query
        self.sent.append(query)
        drop = re.fullmatch(r"DROP (CONSTRAINT|INDEX) `(\w+)` IF EXISTS", query)
        if drop:
            name = drop.group(2)
            self.constraints = [c for c in self.constraints if c["name"] != name]
            self.indexes = [
                i for i in self.indexes if name not in (i["name"], i["owningConstraint"])
            ]
            return []
        create = self.CREATE.fullmatch(query.removesuffix(" IS UNIQUE"))
        assert create, query
        kind, name, label, prop = create.groups()
        if kind == "CONSTRAINT":
            self.constraints.append(_constraint(name, label, "UNIQUENESS", name, "ownedIndex"))
        self.indexes.append(
            _index(name, label, prop, "ONLINE", name if kind == "CONSTRAINT" else None)
        )
        return []


def test_schema_repair_and_undo_in_cypher() -> None:
    server = SchemaServer()
    db = Neo4jGraph(server, "bolt://test:7687")
    asset, agent = DECLS[1], DECLS[2]
    failed, mismatched = db.schema_state([asset, agent])
    assert (failed.state, mismatched.state) == ("FAILED", "MISMATCHED")
    result = graph_schema.repair(db, failed)
    assert result["state"] == "ONLINE"
    result_agent = graph_schema.repair(db, mismatched)
    assert result_agent["state"] == "ONLINE"
    assert server.sent == [
        "DROP CONSTRAINT `constraint_8f2` IF EXISTS",
        "CREATE CONSTRAINT `kfm_asset_id` IF NOT EXISTS FOR (n:`Asset`) REQUIRE n.`id` IS UNIQUE",
        "DROP INDEX `agent_id_idx` IF EXISTS",
        "CREATE CONSTRAINT `kfm_agent_id` IF NOT EXISTS FOR (n:`Agent`) REQUIRE n.`id` IS UNIQUE",
    ]
    server.sent.clear()
    graph_schema.undo_repair(db, "kfm_agent_id", result_agent["previous"])
    assert server.sent == [
        "DROP CONSTRAINT `kfm_agent_id` IF EXISTS",
        "CREATE INDEX `agent_id_idx` IF NOT EXISTS FOR (n:`Agent`) ON (n.`id`)",
    ]
    assert db.schema_state([agent])[0].state == "MISMATCHED"
    graph_schema.undo_repair(db, "kfm_asset_id", result["previous"])
    assert [c["name"] for c in server.constraints] == ["constraint_8f2"]
