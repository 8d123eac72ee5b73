"""The graph checks on real SQLite graphs (no kernel): closure, orphans, schema, counts,
freeze, re-sync, backups; KFM's STAC link-closure cases; hostile input."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kfm_runbooks import checks
from kfm_runbooks.checks.graph import backup as graph_backup
from kfm_runbooks.checks.graph import closure as graph_closure
from kfm_runbooks.checks.graph import counts as graph_counts
from kfm_runbooks.checks.graph import db as graphdb
from kfm_runbooks.checks.graph import orphans as graph_orphans
from kfm_runbooks.checks.graph import schema as graph_schema
from kfm_runbooks.checks.graph import sync as graph_sync
from kfm_runbooks.checks.graph.db import GraphConfig, NodeRow, RelRow, SchemaDecl
from kfm_runbooks.checks.graph.sqlite_backend import SqliteGraph
from kfm_runbooks.sandbox.parts import catalog as catalog_part
from kfm_runbooks.sandbox.parts import graph as graph_part
from kfm_runbooks.target import load_target

from .conftest import KFM_SAMPLE

CASES = KFM_SAMPLE / "fixtures/contracts/v1/data/stac_link_closure_assessment/cases.json"
PACKET_SCHEMA = KFM_SAMPLE / "schemas/contracts/v1/data/stac_link_closure_assessment.schema.json"
MATRIX = KFM_SAMPLE / "control_plane/graph_runtime_compatibility_matrix.json"


def _build(folder: Path, clean: bool) -> Path:
    catalog_part.build(folder, clean)
    sections, _ = graph_part.build(folder, clean)
    target = folder / "target.yaml"
    target.write_text(yaml.safe_dump({"name": "graph-test", **sections}), encoding="utf-8")
    return target


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {
        variant: _build(tmp_path_factory.mktemp(variant), variant == "clean").parent
        for variant in ("faulty", "clean")
    }


class Graph:
    def __init__(self, target: Path) -> None:
        self.config = GraphConfig.from_target(load_target(target))
        self.db = SqliteGraph.open(self.config.path)  # type: ignore[arg-type]
        self.folder = target.parent

    def scan(self) -> graph_orphans.OrphanScan:
        return graph_orphans.scan(self.db, self.config.root_record)


def _graph(templates: dict[str, Path], variant: str, tmp_path: Path) -> Iterator[Graph]:
    folder = tmp_path / variant
    shutil.copytree(templates[variant], folder)
    graph = Graph(folder / "target.yaml")
    yield graph
    graph.db.close()


@pytest.fixture
def faulty(templates: dict[str, Path], tmp_path: Path) -> Iterator[Graph]:
    yield from _graph(templates, "faulty", tmp_path)


@pytest.fixture
def clean(templates: dict[str, Path], tmp_path: Path) -> Iterator[Graph]:
    yield from _graph(templates, "clean", tmp_path)


def _codes(findings: list[graph_closure.Finding]) -> list[str]:
    return sorted(f.code for f in findings)


# --- the module stays light ------------------------------------------------------------


def test_importing_graph_checks_stays_light() -> None:
    code = (
        "import sys\n"
        "import kfm_runbooks.record\n"
        "from kfm_runbooks.checks.graph import undo_ops, db, backup, closure, counts, "
        "orphans, schema, sync, sqlite_backend\n"
        "heavy = [m for m in ('scrapbook', 'papermill', 'pandas', 'pydantic', 'nbformat', "
        "'jupyter_client', 'neo4j', 'jsonschema') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_sandbox_graph_bytes_are_deterministic(tmp_path: Path) -> None:
    first, second = _build(tmp_path / "a", False).parent, _build(tmp_path / "b", False).parent
    files = sorted(p.relative_to(first) for p in (first / "graph").rglob("*") if p.is_file())
    assert len(files) == 8
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel


# --- RFC 8785 canonical JSON (KFM's spec_hash) -----------------------------------------


# --- KFM's STAC link-closure cases -----------------------------------------------------


def test_every_kfm_closure_case_reaches_its_expected_verdict() -> None:
    verdicts, problems = graph_closure.assess_cases(CASES, PACKET_SCHEMA)
    cases = json.loads(CASES.read_text())["cases"]
    assert problems == []
    assert [v.case_id for v in verdicts] == [c["case_id"] for c in cases]
    for verdict, case in zip(verdicts, cases, strict=True):
        expected = [(f["code"], f["path"]) for f in case["expected_findings"]]
        assert (verdict.outcome, verdict.findings) == (case["expected_outcome"], expected)
        assert verdict.matches is True
    outcomes = [v.outcome for v in verdicts]
    assert [outcomes.count(o) for o in ("PASS", "ABSTAIN", "ERROR", "DENY")] == [1, 1, 1, 9]


def test_closure_dimensions_match_kfm_own_test() -> None:
    verdicts, _ = graph_closure.assess_cases(CASES, PACKET_SCHEMA)
    by_id = {v.case_id: v.assessment for v in verdicts}
    assert by_id["missing-target"]["missing_target_record_ids"] == ["collection-missing"]
    assert by_id["missing-target"]["orphan_record_ids"] == ["collection-a", "item-a"]
    assert by_id["target-type-mismatch"]["type_mismatch_edges"] == [
        "catalog-root|child|collection-a"
    ]
    assert by_id["nonreciprocal-edge"]["nonreciprocal_edges"] == ["collection-a|item|item-a"]
    assert by_id["closed-pass"]["reachable_record_ids"] == [
        "catalog-root",
        "collection-a",
        "item-a",
    ]


def test_packet_identity_is_deterministic_and_tamper_evident() -> None:
    manifest = json.loads(CASES.read_text())
    case = manifest["cases"][0]
    first = graph_closure.materialize(manifest["bases"], case)
    assert first == graph_closure.materialize(manifest["bases"], case)
    assert first["assessment_id"] == "kfm:stac-link-closure:" + first["spec_hash"][7:31]
    schema = json.loads(PACKET_SCHEMA.read_text())
    first["records"][2]["record_conformance_ref"] += "-edited"
    outcome, findings = graph_closure.validate_packet(first, schema)
    assert outcome == "DENY"
    assert findings == [
        ("STAC_LINK_ASSESSMENT_ID_MISMATCH", "/assessment_id"),
        ("STAC_LINK_SPEC_HASH_MISMATCH", "/spec_hash"),
    ]


def test_bad_cases_input_becomes_findings(tmp_path: Path) -> None:
    broken = tmp_path / "cases.json"
    broken.write_text('{"bases": {}, "cases": [', encoding="utf-8")
    assert _codes(graph_closure.assess_cases(broken, PACKET_SCHEMA)[1]) == [
        "STAC_LINK_JSON_INVALID"
    ]
    dupes = tmp_path / "dupes.json"
    dupes.write_text('{"bases": {}, "bases": {}}', encoding="utf-8")
    assert _codes(graph_closure.assess_cases(dupes, PACKET_SCHEMA)[1]) == [
        "STAC_LINK_JSON_DUPLICATE_KEY"
    ]
    manifest = json.loads(CASES.read_text())
    manifest["cases"] = [
        {"case_id": "no-base", "base": "nope"},
        {"case_id": "bad-pointer", "base": "closed", "mutations": [{"path": "/records/9/x"}]},
        "not an object",
    ]
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(manifest), encoding="utf-8")
    verdicts, problems = graph_closure.assess_cases(odd, PACKET_SCHEMA)
    assert verdicts == [] and _codes(problems) == ["STAC_LINK_CASE_INVALID"] * 3
    missing = graph_closure.assess_cases(CASES, tmp_path / "absent.json")[1]
    assert _codes(missing) == ["STAC_LINK_SCHEMA_UNAVAILABLE"]


# --- the SQLite back end ---------------------------------------------------------------


def test_open_refuses_what_is_not_a_kfm_graph(tmp_path: Path) -> None:
    with pytest.raises(graphdb.GraphUnavailable, match="not found"):
        SqliteGraph.open(tmp_path / "absent.sqlite")
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(graphdb.GraphUnavailable, match="cannot be read"):
        SqliteGraph.open(garbage)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(graphdb.GraphUnavailable, match="not a KFM SQLite graph"):
        SqliteGraph.open(other)


def test_declared_unique_constraint_is_enforced_by_sqlite(tmp_path: Path) -> None:
    db = SqliteGraph.create(tmp_path / "g.sqlite")
    db.apply_schema([SchemaDecl("kfm_item_id", "UNIQUE", "Item", "id")])
    db.insert_nodes([NodeRow("a", ("Item",), {"id": "a"}), NodeRow("a", ("Asset",), {"id": "a"})])
    with pytest.raises(sqlite3.IntegrityError, match="kfm_item_id"):
        db.insert_nodes([NodeRow("a", ("Item",), {"id": "a"})])
    assert db.label_counts() == {"Asset": 1, "Item": 1}
    db.close()


def test_identifiers_never_reach_sql_unvalidated(tmp_path: Path) -> None:
    db = SqliteGraph.create(tmp_path / "g.sqlite")
    for bad in ("Item') OR 1=1 --", "", "1abc", "a b"):
        with pytest.raises(ValueError, match="identifier"):
            db.duplicates(bad, "id")
        with pytest.raises(ValueError, match="identifier"):
            db.add_label(["x"], bad)
    with pytest.raises(ValueError, match="not a declared schema object"):
        db.drop_schema("graph_rel_src")
    db.close()


def test_reads_never_write(clean: Graph) -> None:
    before = clean.config.path.read_bytes()  # type: ignore[union-attr]
    clean.scan()
    clean.db.schema_state(graph_schema.load_declared(clean.config.schema)[0])
    graphdb.graph_digest(clean.db)
    assert clean.config.path.read_bytes() == before  # type: ignore[union-attr]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        clean.db._conn.execute("DELETE FROM nodes")


# --- orphans ---------------------------------------------------------------------------


def test_orphan_scan_finds_the_seeded_orphans(faulty: Graph) -> None:
    scan = faulty.scan()
    assert [(f.code, f.subject) for f in scan.findings] == [
        ("GRAPH_ORPHAN_RECORD", "kfm-sbx-hydro-wells"),
        ("GRAPH_PROV_WITHOUT_EDGES", "urn:kfm:run:sandbox:aborted-20260601"),
    ]
    assert scan.assessment["outcome"] == "LINK_GRAPH_OPEN"
    assert scan.per_label()["Item"] == {"connected": 5, "orphaned": 1, "quarantined": 0}


def test_clean_graph_has_no_orphans(clean: Graph) -> None:
    scan = clean.scan()
    assert scan.findings == [] and scan.assessment["outcome"] == "LINK_GRAPH_CLOSED"


def test_quarantine_relink_and_their_undo(faulty: Graph) -> None:
    scan = faulty.scan()
    keys = sorted(scan.orphan_ids + scan.isolated_ids)
    assert graph_orphans.quarantine(faulty.db, keys)["changed"] == 2
    assert graph_orphans.quarantine(faulty.db, keys)["changed"] == 0  # idempotent
    contained = faulty.scan()
    assert _codes(contained.findings) == ["GRAPH_NODE_QUARANTINED"] * 2
    [entry] = graph_orphans.relink_plan(faulty.db, "kfm-sandbox")
    assert (entry.item, entry.collection, entry.quarantined) == (
        "kfm-sbx-hydro-wells",
        "kfm-sbx-hydrology",
        True,
    )
    result = graph_orphans.relink(faulty.db, entry)
    assert [r["type"] for r in result["created"]] == ["ITEM", "COLLECTION"]
    assert graph_orphans.relink_plan(faulty.db, "kfm-sandbox") == []
    after = faulty.scan()
    assert [f.subject for f in after.findings] == ["urn:kfm:run:sandbox:aborted-20260601"]
    assert after.assessment["outcome"] == "LINK_GRAPH_CLOSED"
    undone = graph_orphans.unlink(faulty.db, entry.item, result["created"], True)
    assert undone == {"item": entry.item, "deleted": 2, "requarantined": 1}
    assert graph_orphans.unquarantine(faulty.db, keys)["changed"] == 2
    assert _codes(faulty.scan().findings) == _codes(scan.findings)


def test_stub_nodes_and_one_way_edges_are_open_links(clean: Graph, tmp_path: Path) -> None:
    db = SqliteGraph.create(tmp_path / "g.sqlite")
    db.insert_nodes([*clean.db.nodes(), NodeRow("ghost", (), {"id": "ghost"})])
    db.insert_rels(
        [r for r in clean.db.rels() if (r.type, r.dst) != ("COLLECTION", "kfm-sbx-landcover")]
        + [RelRow("ITEM", "kfm-sbx-hydrology", "ghost", {"target_type": "ITEM"})]
    )
    scan = graph_orphans.scan(db, "kfm-sandbox")
    assert [(f.code, f.subject) for f in scan.findings] == [
        ("GRAPH_MISSING_TARGET", "ghost"),
        ("GRAPH_NONRECIPROCAL_EDGE", "kfm-sbx-landcover|item|kfm-sbx-landcover-2019"),
        ("GRAPH_NONRECIPROCAL_EDGE", "kfm-sbx-landcover|item|kfm-sbx-landcover-2020"),
        ("GRAPH_NONRECIPROCAL_EDGE", "kfm-sbx-landcover|item|kfm-sbx-landcover-2021"),
    ]
    assert graph_orphans.find_root(scan.graph, "kfm-sbx-hydrology")[1][0].code == (
        "GRAPH_ROOT_INVALID"
    )
    db.close()


# --- declared schema -------------------------------------------------------------------


def test_dropped_unique_index_is_missing_and_repair_is_reversible(faulty: Graph) -> None:
    decls, problems = graph_schema.load_declared(faulty.config.schema)
    assert problems == [] and len(decls) == 8
    states = {s.decl.name: s for s in faulty.db.schema_state(decls)}
    assert [n for n, s in states.items() if s.state != "ONLINE"] == ["kfm_asset_id"]
    assert _codes(graph_schema.state_findings(list(states.values()))) == [
        "GRAPH_CONSTRAINT_MISSING"
    ]
    result = graph_schema.repair(faulty.db, states["kfm_asset_id"])
    assert result["state"] == "ONLINE" and result["previous"] is None
    again = faulty.db.schema_state(decls)
    assert all(s.state == "ONLINE" for s in again)
    assert graph_schema.repair(faulty.db, again[2])["action"] == "none"  # idempotent
    assert graph_schema.undo_repair(faulty.db, "kfm_asset_id", None)["dropped"] is True
    assert faulty.db.schema_state(decls)[2].state == "MISSING"


def test_a_non_unique_index_under_the_name_is_mismatched(clean: Graph) -> None:
    decls, _ = graph_schema.load_declared(clean.config.schema)
    asset = next(d for d in decls if d.name == "kfm_asset_id")
    clean.db.drop_schema("kfm_asset_id")
    weak = "CREATE INDEX kfm_asset_id ON nodes (json_extract(props, '$.id'))"
    clean.db.restore_schema("kfm_asset_id", weak)
    [state] = clean.db.schema_state([asset])
    assert (state.state, state.detail) == ("MISMATCHED", "live index not UNIQUE")
    result = graph_schema.repair(clean.db, state)
    assert result["action"] == "recreated" and result["state"] == "ONLINE"
    graph_schema.undo_repair(clean.db, "kfm_asset_id", result["previous"])
    assert clean.db.schema_state([asset])[0].state == "MISMATCHED"
    with pytest.raises(ValueError, match="refusing"):
        clean.db.restore_schema("kfm_asset_id", "DROP TABLE nodes")


def test_a_rotted_index_is_failed_and_rebuilt(clean: Graph) -> None:
    path = clean.config.path
    assert path is not None
    clean.db.close()
    data = path.read_bytes()
    at = data.index(b"kfm-sbx-hydro-gauges")  # first copy: the nodes table row
    path.write_bytes(data[:at] + b"kfm-sbx-hydro-gaugez" + data[at + 20 :])
    clean.db = SqliteGraph.open(path)
    decls, _ = graph_schema.load_declared(clean.config.schema)
    states = clean.db.schema_state(decls)
    failed = [s for s in states if s.state == "FAILED"]
    assert [(s.decl.name, s.detail) for s in failed] == [
        ("kfm_item_id", "row 17 missing from index kfm_item_id")
    ]
    damaged = graph_schema.integrity_findings(clean.db.integrity(), decls)
    assert [(f.code, f.subject) for f in damaged] == [("GRAPH_DB_INTEGRITY", "graph_node_key")]
    assert graph_schema.repair(clean.db, failed[0])["state"] == "ONLINE"
    assert clean.db.reindex("graph_node_key") is True
    assert clean.db.integrity() == []


def test_duplicates_block_a_unique_constraint(faulty: Graph) -> None:
    decls, _ = graph_schema.load_declared(faulty.config.schema)
    faulty.db.insert_nodes(
        [NodeRow("kfm-sbx-landcover-2019/data", ("Asset",), {"id": "kfm-sbx-landcover-2019/data"})]
    )
    states = faulty.db.schema_state(decls)
    [dupes] = graph_schema.duplicate_findings(faulty.db, states)
    assert dupes.code == "GRAPH_CONSTRAINT_DUPLICATES" and dupes.subject == "kfm_asset_id"
    assert "'kfm-sbx-landcover-2019/data'×2" in dupes.message
    with pytest.raises(sqlite3.IntegrityError):
        graph_schema.repair(faulty.db, next(s for s in states if s.state == "MISSING"))


def test_bad_schema_declarations_are_findings(tmp_path: Path) -> None:
    assert _codes(graph_schema.load_declared(None)[1]) == ["GRAPH_SCHEMA_NOT_DECLARED"]
    bad = tmp_path / "schema.json"
    bad.write_text("{nope", encoding="utf-8")
    assert _codes(graph_schema.load_declared(bad)[1]) == ["GRAPH_SCHEMA_UNREADABLE"]
    bad.write_text(
        json.dumps(
            {
                "constraints": [
                    {"name": "ok_one", "label": "Item", "property": "id"},
                    {"name": "ok_one", "label": "Item", "property": "id"},
                    {"name": "graph_rel_src", "label": "Item", "property": "id"},
                    {"name": "x", "label": "It em", "property": "id"},
                    {"name": "y", "label": "Item", "property": "id", "type": "RANGE"},
                ],
                "indexes": "not a list",
            }
        ),
        encoding="utf-8",
    )
    decls, problems = graph_schema.load_declared(bad)
    assert [d.name for d in decls] == ["ok_one"]
    assert [f.field for f in problems] == [
        "/constraints/1",
        "/constraints/2",
        "/constraints/3",
        "/constraints/4",
        "/indexes",
    ]


def test_kfm_runtime_matrix_holds_an_unresolved_runtime(tmp_path: Path) -> None:
    [unverified] = graph_schema.compatibility(MATRIX, ("NEO4J", "UNKNOWN"))
    assert unverified.code == "GRAPH_RUNTIME_UNVERIFIED" and unverified.severity == "hold"
    assert "NEEDS_VERIFICATION" in unverified.message
    assert "RUNTIME_VERSION_UNRESOLVED" in unverified.message
    [other] = graph_schema.compatibility(MATRIX, ("SQLITE", "3.40.1"))
    assert other.code == "GRAPH_RUNTIME_NOT_IN_MATRIX" and other.severity == "hold"
    supported = tmp_path / "matrix.json"
    row = {"row_id": "r1", "runtime_name": "NEO4J", "runtime_version": "5.20.0"}
    supported.write_text(json.dumps({"rows": [{**row, "support_state": "SUPPORTED"}]}))
    [ok] = graph_schema.compatibility(supported, ("NEO4J", "5.20.0 (community)"))
    assert ok.code == "GRAPH_RUNTIME_SUPPORTED" and ok.severity == "info"


# --- counts and freeze -----------------------------------------------------------------


def test_count_drop_against_the_snapshot(faulty: Graph) -> None:
    snapshot, problems = graph_counts.load_snapshot(faulty.config.snapshot)
    assert snapshot is not None and problems == []
    counts = graph_counts.live_counts(faulty.db.label_counts(), faulty.db.rel_type_counts())
    rows = graph_counts.compare(snapshot, counts)
    bad = [(r.name, r.baseline, r.current, r.status) for r in rows if r.status != "ok"]
    assert bad == [("Asset", 6, 3, "drop"), ("HAS_ASSET", 6, 3, "drop")]
    assert [f.subject for f in graph_counts.count_findings(rows)] == [":Asset", "[:HAS_ASSET]"]


def test_tolerances_and_new_names() -> None:
    snapshot = graph_counts.Snapshot(
        "t",
        {"labels": {"Item": 100, "Catalog": 1}, "relationship_types": {}},
        graph_counts.Tolerance(1, 10),
        {"labels": {"Catalog": graph_counts.Tolerance(0, 0)}},
    )
    rows = graph_counts.compare(
        snapshot,
        {"labels": {"Item": 110, "Catalog": 2, "Extra": 2}, "relationship_types": {"X": 1}},
    )
    assert [(r.name, r.status) for r in rows] == [
        ("Catalog", "surge"),
        ("Extra", "surge"),
        ("Item", "ok"),
        ("X", "ok"),
    ]
    assert graph_counts.live_counts({"Quarantined": 5, "Item": 1}, {})["labels"] == {"Item": 1}


def test_bad_snapshots_hold(tmp_path: Path) -> None:
    assert _codes(graph_counts.load_snapshot(None)[1]) == ["GRAPH_SNAPSHOT_MISSING"]
    bad = tmp_path / "snap.json"
    bad.write_text(json.dumps({"profile": "x", "labels": {"A": -1}}), encoding="utf-8")
    [finding] = graph_counts.load_snapshot(bad)[1]
    assert finding.code == "GRAPH_SNAPSHOT_INVALID" and finding.severity == "hold"


def test_freeze_blocks_every_other_writer(clean: Graph) -> None:
    path = clean.config.path
    assert clean.db.freeze("INC-1:a") is True and clean.db.freeze("INC-1:a") is False
    clean.db.freeze("INC-2:b")
    state = clean.db.freeze_state()
    assert state.reasons == ("INC-1:a", "INC-2:b") and state.enforced
    other = sqlite3.connect(path, isolation_level=None)  # autocommit, like a loader
    with pytest.raises(sqlite3.IntegrityError, match="frozen"):
        other.execute("DELETE FROM rels")
    with pytest.raises(sqlite3.IntegrityError, match="frozen"):
        other.execute("INSERT INTO nodes (labels, props) VALUES ('[]', '{}')")
    assert clean.db.add_label(["kfm-sandbox"], "Quarantined") == 1  # the incident's own step
    assert clean.db.freeze_state().enforced
    clean.db.unfreeze("INC-1:a")
    assert clean.db.freeze_state().reasons == ("INC-2:b",)
    with pytest.raises(sqlite3.IntegrityError, match="frozen"):
        other.execute("DELETE FROM rels")
    other.execute("DROP TRIGGER kfm_freeze_rels_delete")
    assert "partly" in clean.db.freeze_state().detail or "NOT" in clean.db.freeze_state().detail
    assert clean.db.freeze("INC-2:b") is True  # re-enforced
    clean.db.unfreeze("INC-2:b")
    assert not clean.db.freeze_state().frozen
    other.execute("DELETE FROM rels WHERE type = 'ROOT'")
    other.close()


# --- re-sync from the catalog ----------------------------------------------------------


def test_the_graph_is_exactly_what_the_catalog_means(clean: Graph) -> None:
    derived = graph_sync.derive_from_catalog(clean.folder / "catalog" / "catalog.json")
    assert derived.problems == []
    assert graph_sync.plan_resync(clean.db, derived).empty
    assert graphdb.content_digest(derived.nodes, derived.rels) == graphdb.graph_digest(clean.db)


def test_resync_restores_what_was_lost_and_undoes_exactly(faulty: Graph) -> None:
    derived = graph_sync.derive_from_catalog(faulty.folder / "catalog" / "catalog.json")
    plan = graph_sync.plan_resync(faulty.db, derived)
    assert plan.summary() == {":Asset": 3, "[:COLLECTION]": 1, "[:HAS_ASSET]": 3, "[:ITEM]": 1}
    result = graph_sync.apply_resync(faulty.db, plan)
    assert result["created"] == 8
    assert graph_sync.plan_resync(faulty.db, derived).empty
    assert graph_sync.apply_resync(faulty.db, plan)["created"] == 0  # MERGE: safe twice
    undone = graph_sync.undo_resync(faulty.db, result["nodes"], result["rels"])
    assert undone == {"deleted_rels": 5, "deleted_nodes": 3}
    assert graph_sync.plan_resync(faulty.db, derived).summary() == plan.summary()


def test_derivation_stays_inside_the_catalog(tmp_path: Path) -> None:
    root = tmp_path / "cat" / "catalog.json"
    root.parent.mkdir()
    (tmp_path / "outside.json").write_text(json.dumps({"type": "Catalog", "id": "evil"}))
    root.write_text(
        json.dumps(
            {
                "type": "Catalog",
                "id": "root",
                "links": [
                    {"rel": "child", "href": "../outside.json"},
                    {"rel": "child", "href": "/etc/passwd"},
                    {"rel": "child", "href": "broken.json"},
                ],
            }
        )
    )
    (root.parent / "broken.json").write_text("{not json")
    derived = graph_sync.derive_from_catalog(root)
    assert [n.key for n in derived.nodes] == ["root"]
    assert _codes(derived.problems) == ["GRAPH_SOURCE_UNREADABLE"]


# --- backups ---------------------------------------------------------------------------


def _verify(graph: Graph, name: str) -> graph_backup.BackupReport:
    assert graph.config.backups is not None
    return graph_backup.verify(
        graph.config.backups,
        name,
        live=graphdb.graph_digest(graph.db),
        live_last_write=graph.db.last_write(),
        max_lag_hours=graph.config.backup_max_lag_hours,
    )


def test_rotted_latest_backup_fails_and_the_live_graph_is_untouched(faulty: Graph) -> None:
    live_bytes = faulty.config.path.read_bytes()  # type: ignore[union-attr]
    latest, problems = graph_backup.read_pointer(faulty.config.backups)
    assert latest is not None and problems == []
    report = _verify(faulty, latest)
    assert report.codes == [
        "GRAPH_BACKUP_CHECKSUM_MISMATCH",
        "GRAPH_BACKUP_CONTENT_MISMATCH",
        "GRAPH_BACKUP_RESTORE_FAILED",
    ]
    assert report.restored is not None and report.restored.nodes == 24
    older = [m for m in graph_backup.list_manifests(faulty.config.backups) if m != latest]
    assert _verify(faulty, older[0]).codes == ["GRAPH_BACKUP_STALE"]
    assert faulty.config.path.read_bytes() == live_bytes  # type: ignore[union-attr]


def test_clean_backup_verifies_and_equals_the_live_graph(clean: Graph) -> None:
    latest, _ = graph_backup.read_pointer(clean.config.backups)
    assert latest is not None
    report = _verify(clean, latest)
    assert report.outcome == "PASS" and report.lag_hours == 0
    assert report.restored == graphdb.graph_digest(clean.db)


def test_a_backup_that_diverges_from_an_unchanged_graph_fails(clean: Graph) -> None:
    clean.db.close()
    other = sqlite3.connect(clean.config.path)  # a write that left no last-write trace
    other.execute("DROP TRIGGER graph_touch_rels_delete")
    other.execute("DELETE FROM rels WHERE type = 'ROOT'")
    other.commit()
    other.close()
    clean.db = SqliteGraph.open(clean.config.path)  # type: ignore[arg-type]
    latest, _ = graph_backup.read_pointer(clean.config.backups)
    assert _verify(clean, str(latest)).codes == ["GRAPH_BACKUP_DIVERGES"]


def test_take_backup_is_verified_idempotent_and_undoable(faulty: Graph) -> None:
    folder = faulty.config.backups
    assert folder is not None
    before, _ = graph_backup.read_pointer(folder)
    result = graph_backup.take_backup(faulty.db, folder)
    assert result["created"] is True and result["previous"] == before
    assert graph_backup.read_pointer(folder)[0] == result["manifest"]
    report = _verify(faulty, result["manifest"])
    assert report.outcome == "PASS" and report.restored == graphdb.graph_digest(faulty.db)
    again = graph_backup.take_backup(faulty.db, folder)
    assert again["created"] is False and again["manifest"] == result["manifest"]
    undone = graph_backup.restore_pointer(folder, before, [result["file"], result["manifest"]])
    removed = sorted([result["file"], result["manifest"]])
    assert undone == {"pointer": before, "removed": removed, "changed": True}
    assert graph_backup.read_pointer(folder)[0] == before
    assert not (folder / result["file"]).exists()
    assert not list(folder.glob(".*partial"))


@pytest.mark.parametrize("kind", ["symlink", "oversize", "fifo"])
def test_a_latest_pointer_that_is_not_a_small_regular_file_is_refused(
    faulty: Graph, tmp_path: Path, kind: str
) -> None:
    folder = faulty.config.backups
    assert folder is not None
    latest, _ = graph_backup.read_pointer(folder)
    pointer = folder / graph_backup.POINTER
    pointer.unlink()
    if kind == "symlink":  # a valid name, but read through a link swapped in: never followed
        (tmp_path / "elsewhere").write_text(f"{latest}\n")
        pointer.symlink_to(tmp_path / "elsewhere")
    elif kind == "oversize":  # a valid name padded past the limit: refused unread
        pointer.write_text(f"{latest}\n" + " " * (1 << 20))
    else:
        os.mkfifo(pointer)
    name, problems = graph_backup.read_pointer(folder)
    assert name is None
    assert _codes(problems) == ["GRAPH_BACKUP_POINTER_INVALID"]
    assert checks.verdict(problems) == "FAIL"  # what the runbook reports


def test_hostile_backup_folders_are_findings(faulty: Graph, tmp_path: Path) -> None:
    folder = faulty.config.backups
    assert folder is not None
    latest, _ = graph_backup.read_pointer(folder)
    manifest = json.loads((folder / str(latest)).read_text())
    (folder / "escape.manifest.json").write_text(
        json.dumps({**manifest, "file": "../graph.sqlite"})
    )
    assert _verify(faulty, "escape.manifest.json").codes == ["GRAPH_BACKUP_PATH_ESCAPE"]
    (tmp_path / "elsewhere.sqlite").write_bytes((folder / manifest["file"]).read_bytes())
    (folder / "link.sqlite").symlink_to(tmp_path / "elsewhere.sqlite")
    (folder / "link.manifest.json").write_text(json.dumps({**manifest, "file": "link.sqlite"}))
    assert _verify(faulty, "link.manifest.json").codes == ["GRAPH_BACKUP_SYMLINK_DENIED"]
    (folder / "short.sqlite").write_bytes((folder / manifest["file"]).read_bytes()[:5000])
    (folder / "short.manifest.json").write_text(json.dumps({**manifest, "file": "short.sqlite"}))
    assert "GRAPH_BACKUP_RESTORE_FAILED" in _verify(faulty, "short.manifest.json").codes
    (folder / "junk.manifest.json").write_text('{"profile": 1')
    assert _verify(faulty, "junk.manifest.json").codes == ["GRAPH_BACKUP_MANIFEST_INVALID"]
    (folder / graph_backup.POINTER).write_text("../../etc/passwd\n")
    assert _codes(graph_backup.read_pointer(folder)[1]) == ["GRAPH_BACKUP_POINTER_INVALID"]
    assert _codes(graph_backup.read_pointer(tmp_path / "none")[1]) == ["GRAPH_BACKUP_MISSING"]
    with pytest.raises(ValueError, match="not a manifest"):
        graph_backup.point_latest(folder, "../x.manifest.json")
    with pytest.raises(FileExistsError, match="never overwrite"):
        faulty.db.backup_to(faulty.config.path)  # type: ignore[arg-type]
