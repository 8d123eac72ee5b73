"""Declared constraints and indexes against the live graph; KFM's runtime matrix.

The declared schema is a small JSON file named by the target (`graph.schema`):

    {"profile": "kfm.graph-schema.v1",
     "constraints": [{"name": "kfm_item_id", "label": "Item", "property": "id", "type": "UNIQUE"}],
     "indexes": [{"name": "kfm_item_datetime", "label": "Item", "property": "datetime",
                  "type": "RANGE"}]}

Each declaration is ONLINE, MISSING, MISMATCHED (something else under its name, e.g. a
non-unique index), FAILED (SQLite: `PRAGMA integrity_check` names the index; Neo4j:
SHOW INDEXES state FAILED) or POPULATING (Neo4j, still building: HOLD). A UNIQUE
constraint cannot be (re)built while duplicates exist: they are reported, never merged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import BLOCKING, HOLD, INFO, Finding
from ..catalog.health import read_json_object
from .db import IDENTIFIER_RE, SCHEMA_NAME_RE, GraphBackend, SchemaDecl, SchemaState

KINDS = {"constraints": "UNIQUE", "indexes": "RANGE"}
STATE_SEVERITY = {"MISSING": BLOCKING, "MISMATCHED": BLOCKING, "FAILED": BLOCKING}
SUPPORTED_STATES = frozenset({"SUPPORTED", "COMPATIBLE"})


def state_code(state: SchemaState) -> str:
    what = "CONSTRAINT" if state.decl.is_constraint else "INDEX"
    return f"GRAPH_{what}_{state.state}"


def load_declared(
    path: Path | None, shown: str = "graph.schema"
) -> tuple[list[SchemaDecl], list[Finding]]:
    """The declarations, or findings saying why there are none (never an exception)."""
    if path is None:
        return [], [Finding("GRAPH_SCHEMA_NOT_DECLARED", shown, "/", HOLD, "no declared schema")]
    document, code = read_json_object(path)
    if document is None:
        return [], [Finding("GRAPH_SCHEMA_UNREADABLE", shown, "/", BLOCKING, code or "")]
    decls: list[SchemaDecl] = []
    problems: list[Finding] = []
    names: set[str] = set()
    for key, kind in KINDS.items():
        entries = document.get(key, [])
        if not isinstance(entries, list):
            problems.append(Finding("GRAPH_SCHEMA_DECL_INVALID", shown, f"/{key}", BLOCKING))
            continue
        for index, entry in enumerate(entries):
            where = f"/{key}/{index}"
            if not isinstance(entry, dict):
                problems.append(Finding("GRAPH_SCHEMA_DECL_INVALID", shown, where, BLOCKING))
                continue
            name, label, prop = entry.get("name"), entry.get("label"), entry.get("property")
            ok = (
                isinstance(name, str)
                and SCHEMA_NAME_RE.fullmatch(name)
                and not name.startswith(("graph_", "sqlite_", "kfm_freeze"))
                and isinstance(label, str)
                and IDENTIFIER_RE.fullmatch(label)
                and isinstance(prop, str)
                and IDENTIFIER_RE.fullmatch(prop)
                and entry.get("type", kind) == kind
                and name not in names
            )
            if not ok:
                why = "needs a unique lower-case name, a label, a property and type " + kind
                problems.append(Finding("GRAPH_SCHEMA_DECL_INVALID", shown, where, BLOCKING, why))
                continue
            assert isinstance(name, str) and isinstance(label, str) and isinstance(prop, str)
            names.add(name)
            decls.append(SchemaDecl(name, kind, label, prop))
    return decls, problems


def state_findings(states: Sequence[SchemaState]) -> list[Finding]:
    out = []
    for state in states:
        if state.state == "ONLINE":
            continue
        severity = STATE_SEVERITY.get(state.state, HOLD)
        message = state.decl.describe() + (f": {state.detail}" if state.detail else "")
        out.append(Finding(state_code(state), state.decl.name, "/", severity, message))
    return sorted(out)


_INDEX_IN_MESSAGE = re.compile(r"\bindex (\S+)")


def integrity_findings(problems: Sequence[str], decls: Sequence[SchemaDecl]) -> list[Finding]:
    """Integrity problems not already reported against a declaration (e.g. the graph's
    own structural indexes): one finding per index, or per other problem."""
    declared = {d.name for d in decls}
    seen: dict[str, str] = {}
    for line in problems:
        match = _INDEX_IN_MESSAGE.search(line)
        name = match.group(1) if match else "(database)"
        if name not in declared:
            seen.setdefault(name, line)
    return [
        Finding("GRAPH_DB_INTEGRITY", name, "/", BLOCKING, f"integrity_check: {line}")
        for name, line in sorted(seen.items())
    ]


def duplicate_findings(db: GraphBackend, states: Sequence[SchemaState]) -> list[Finding]:
    """Values that would make a UNIQUE constraint impossible to (re)build."""
    out = []
    for state in states:
        if not state.decl.is_constraint or state.state == "ONLINE":
            continue
        dupes = db.duplicates(state.decl.label, state.decl.prop)
        if dupes:
            shown = ", ".join(f"{value!r}×{count}" for value, count in dupes[:5])
            more = f" (+{len(dupes) - 5} more)" if len(dupes) > 5 else ""
            out.append(
                Finding(
                    "GRAPH_CONSTRAINT_DUPLICATES",
                    state.decl.name,
                    "/",
                    BLOCKING,
                    f"{len(dupes)} duplicate :{state.decl.label}.{state.decl.prop} "
                    f"value(s): {shown}{more}",
                )
            )
    return out


def repair(db: GraphBackend, state: SchemaState) -> dict[str, Any]:
    """Bring one declaration ONLINE: create it, or drop what is there and rebuild it."""
    if state.state == "ONLINE":
        return {"name": state.decl.name, "action": "none", "state": "ONLINE"}
    previous = None
    if state.state in ("MISMATCHED", "FAILED") and state.live_name:
        previous = {"name": state.live_name, "definition": state.actual}
        db.drop_schema(state.live_name)
    result = db.create_schema(state.decl)
    after = {s.decl.name: s.state for s in db.schema_state([state.decl])}
    return {
        "name": state.decl.name,
        "action": "recreated" if previous else "created",
        "created": bool(result.get("created")) or previous is not None,
        "previous": previous,
        "state": after.get(state.decl.name),
    }


def undo_repair(db: GraphBackend, name: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    """Undo `repair`: drop what it created and put back what it replaced."""
    dropped = db.drop_schema(name)
    restored = False
    if previous and previous.get("definition"):
        restored = db.restore_schema(str(previous["name"]), str(previous["definition"]))
    return {"name": name, "dropped": dropped, "restored": restored}


def compatibility(
    path: Path | None, runtime: tuple[str, str], shown: str = "compatibility matrix"
) -> list[Finding]:
    """KFM's graph runtime compatibility matrix: is this runtime a supported row?"""
    if path is None:
        return []
    document, code = read_json_object(path)
    if document is None or not isinstance(document.get("rows"), list):
        return [Finding("GRAPH_RUNTIME_MATRIX_UNREADABLE", shown, "/", BLOCKING, code or "no rows")]
    name, version = runtime
    rows = [
        r
        for r in document["rows"]
        if isinstance(r, dict)
        and str(r.get("runtime_name", "")).upper() == name
        and r.get("runtime_version") in (version.split(" ")[0], "UNRESOLVED")
    ]
    if not rows:
        why = f"no row for runtime {name} {version}: compatibility unverified"
        return [Finding("GRAPH_RUNTIME_NOT_IN_MATRIX", shown, "/rows", HOLD, why)]
    out = []
    for row in rows:
        state = str(row.get("support_state"))
        reasons = ", ".join(str(c) for c in row.get("reason_codes") or [])
        message = f"{row.get('row_id')}: {state} ({reasons})" if reasons else state
        if state in SUPPORTED_STATES and row.get("runtime_version") != "UNRESOLVED":
            out.append(Finding("GRAPH_RUNTIME_SUPPORTED", str(row.get("row_id")), "/", INFO, state))
        else:
            out.append(
                Finding("GRAPH_RUNTIME_UNVERIFIED", str(row.get("row_id")), "/", HOLD, message)
            )
    return out
