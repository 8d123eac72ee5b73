"""The graph domain's undo operations (`kfm-runbook rollback` runs them by name).

Every state-changing step of the graph runbooks records one of these as its undo; each
reopens the action's own target and reverses exactly what the step did. The checks live
in graphdb (access layer), graph_closure, graph_orphans, graph_schema, graph_counts,
graph_backup and graph_sync.
"""

from __future__ import annotations

from typing import Any

from ...target import Target
from .. import undoable
from .db import GraphBackend, GraphConfig, connect


def _open(target: Target) -> tuple[GraphConfig, GraphBackend]:
    config = GraphConfig.from_target(target)
    return config, connect(config)


@undoable("graph.unquarantine")
def _undo_quarantine(target: Target, keys: list[str]) -> dict[str, Any]:
    from .orphans import unquarantine

    _, db = _open(target)
    try:
        return unquarantine(db, keys)
    finally:
        db.close()


@undoable("graph.unlink")
def _undo_relink(
    target: Target, item: str, created: list[dict[str, Any]], requarantine: bool
) -> dict[str, Any]:
    from .orphans import unlink

    _, db = _open(target)
    try:
        return unlink(db, item, created, requarantine)
    finally:
        db.close()


@undoable("graph.undo_schema_repair")
def _undo_schema(target: Target, name: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    from .schema import undo_repair

    _, db = _open(target)
    try:
        return undo_repair(db, name, previous)
    finally:
        db.close()


@undoable("graph.unfreeze")
def _undo_freeze(target: Target, reason: str) -> dict[str, Any]:
    _, db = _open(target)
    try:
        return {"reason": reason, "lifted": db.unfreeze(reason)}
    finally:
        db.close()


@undoable("graph.freeze")
def _undo_unfreeze(target: Target, reason: str) -> dict[str, Any]:
    _, db = _open(target)
    try:
        return {"reason": reason, "frozen": db.freeze(reason)}
    finally:
        db.close()


@undoable("graph.undo_resync")
def _undo_resync(target: Target, nodes: list[str], rels: list[dict[str, Any]]) -> dict[str, Any]:
    from .sync import undo_resync

    _, db = _open(target)
    try:
        return undo_resync(db, nodes, rels)
    finally:
        db.close()


@undoable("graph.restore_backup_pointer")
def _undo_backup(target: Target, previous: str | None, created: list[str]) -> dict[str, Any]:
    from .backup import restore_pointer

    config = GraphConfig.from_target(target)
    if config.backups is None:
        return {"pointer": None, "removed": [], "reason": "target has no graph.backups"}
    return restore_pointer(config.backups, previous, created)
