"""Undo operations by name: the table `kfm-runbook rollback` resolves a ledger's undo with.

A state-changing step records how to undo itself as `{"op": name, "args": {...}}` in the
ledger; `kfm-runbook rollback` looks the name up in `UNDO_OPS` and runs the function it
names (`module:function`, imported only then) through the apply gate and evidence trail.
Only the functions listed here can ever be called this way.

The names are persisted in ledgers: **a name never changes and is never removed**, or old
incidents could no longer be rolled back. The code behind a name may move: change the
right-hand side only. Each function is also marked `@undoable(name)` where it is defined,
so whoever edits it sees that its signature is persisted too (the ledger stores its keyword
arguments); tests check that the table and the marks agree both ways, and `kfm-runbook
lint` (RB077) that every `undo={"op": ...}` a runbook writes names an entry here.

Light: standard library only (imported by the linter and inside kernels).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from ..errors import InputError

UndoFn = Callable[..., dict[str, Any]]
_F = TypeVar("_F", bound=Callable[..., Any])

_PKG = "kfm_runbooks.checks"

UNDO_OPS: Mapping[str, str] = MappingProxyType(
    {
        "ai_focus.restore_flags": f"{_PKG}.ai.focus:_restore_flags",
        "ai_focus.restore_index": f"{_PKG}.ai.focus:_restore_index",
        "api.drop_index": f"{_PKG}.api.indexes:_undo_create_index",
        "api.set_flag": f"{_PKG}.api.server_errors:_undo_set_flag",
        "api.set_role_enforcement": f"{_PKG}.api.auth:_undo_enforcement",
        "api.unblock_client": f"{_PKG}.api.abuse:_undo_block",
        "catalog.restore_item": f"{_PKG}.catalog.health:_undo_restore_item",
        "catalog.restore_link": f"{_PKG}.catalog.health:_undo_restore_link",
        "catalog_withdraw.restore": f"{_PKG}.catalog.withdraw:_undo_restore",
        "graph.freeze": f"{_PKG}.graph.undo_ops:_undo_unfreeze",
        "graph.restore_backup_pointer": f"{_PKG}.graph.undo_ops:_undo_backup",
        "graph.undo_resync": f"{_PKG}.graph.undo_ops:_undo_resync",
        "graph.undo_schema_repair": f"{_PKG}.graph.undo_ops:_undo_schema",
        "graph.unfreeze": f"{_PKG}.graph.undo_ops:_undo_freeze",
        "graph.unlink": f"{_PKG}.graph.undo_ops:_undo_relink",
        "graph.unquarantine": f"{_PKG}.graph.undo_ops:_undo_quarantine",
        "infra.reinstall_certificate": f"{_PKG}.infra.tls:_undo_reinstall_certificate",
        "infra.remove_backup": f"{_PKG}.infra.backup:_undo_remove_backup",
        "infra.restore_backup_job": f"{_PKG}.infra.backup:_undo_restore_backup_job",
        "infra.restore_reclaimed": f"{_PKG}.infra.disk:_undo_restore_reclaimed",
        "pipelines.reinstate_release": f"{_PKG}.pipelines.releases:_undo_withdraw",
        "pipelines.release_promotion": f"{_PKG}.pipelines.determinism:_undo_hold",
        "pipelines.release_sync": f"{_PKG}.pipelines.sync:_undo_hold",
        "pipelines.repoint_release": f"{_PKG}.pipelines.releases:_undo_repoint",
        "pipelines.restore_run": f"{_PKG}.pipelines.watchers:_undo_requeue",
        "pipelines.resume_watcher": f"{_PKG}.pipelines.watchers:_undo_pause",
        "pipelines.set_change_detection": f"{_PKG}.pipelines.sync:_undo_gate",
        "security_access.unblock": f"{_PKG}.security.access:_undo_unblock",
        "security_layers.restore_layer": f"{_PKG}.security.layers:_undo_restore_layer",
        "security_secrets.remove_rotation": f"{_PKG}.security.leaks:_undo_remove_rotation",
        "security_secrets.restore_file": f"{_PKG}.security.leaks:_undo_restore_file",
        "security_supply.clear_untrusted": f"{_PKG}.security.supply:_undo_clear_untrusted",
        "security_wheels.restore_backup": f"{_PKG}.security.wheels:_undo_restore_backup",
        "ui_a11y.restore_release": f"{_PKG}.ui.a11y:_undo_rollback",
        "ui_registry.remove_tile_source": f"{_PKG}.ui.registry:_undo_restore_source",
        "ui_registry.republish_layer": f"{_PKG}.ui.registry:_undo_withdraw",
        "ui_registry.withdraw_layer": f"{_PKG}.ui.registry:_undo_republish",
        "ui_stories.republish_node": f"{_PKG}.ui.stories:_undo_withdraw_node",
        "ui_stories.republish_story": f"{_PKG}.ui.stories:_undo_withdraw_story",
        "ui_stories.set_node_layer": f"{_PKG}.ui.stories:_undo_set_layer",
        "ui_stories.withdraw_node": f"{_PKG}.ui.stories:_undo_republish_node",
        "ui_stories.withdraw_story": f"{_PKG}.ui.stories:_undo_republish_story",
        "ui_timeline.restore_time_index": f"{_PKG}.ui.timeline:_undo_regenerate",
    }
)


class UnknownUndoOpError(InputError, KeyError):
    """An undo operation name that is not in `UNDO_OPS` (a typo, or a ledger written by a
    newer version)."""

    def __init__(self, op: object, action_id: str | None = None) -> None:
        where = f"{action_id}: " if action_id else ""
        super().__init__(
            f"{where}unknown undo operation {op!r}: not in kfm_runbooks.checks.undo.UNDO_OPS "
            "(`kfm-runbook lint` names a mistyped one in a runbook; undo this step by hand "
            "from 20_actions/rollback.md)"
        )
        self.op = op

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


def undoable(name: str) -> Callable[[_F], _F]:
    """Mark a function as the code behind the persisted undo operation `name`.

    Registers nothing: `UNDO_OPS` is the registry. The mark tells a reader the function's
    name in ledgers (and that its keyword arguments are persisted there)."""

    def mark(function: _F) -> _F:
        function.__undo_op__ = name  # type: ignore[attr-defined]
        return function

    return mark


def undo_op(name: object) -> UndoFn:
    """The function behind undo operation `name`, imported now; UnknownUndoOpError when the
    table has no such name."""
    if not isinstance(name, str) or name not in UNDO_OPS:
        raise UnknownUndoOpError(name)
    module, _, attribute = UNDO_OPS[name].partition(":")
    function: UndoFn = getattr(importlib.import_module(module), attribute)
    return function


EFFECT_KEYS = (
    "restored",
    "reinstated",
    "republished",
    "withdrawn",
    "resumed",
    "released",
    "cleared",
    "removed",
    "dropped",
    "reinstalled",
    "lifted",
    "frozen",
    "deleted",
    "deleted_nodes",
    "deleted_rels",
)


def undo_effect(result: Any) -> bool | None:
    """Whether an undo operation changed anything, as its result says: `changed`, else the
    effects it reports (`restored`, `dropped`, `removed`, ...: a change when any is true,
    non-zero or non-empty, a no-op when all are not), else `previous` against `value` /
    `now`. None when the result does not say."""
    if not isinstance(result, dict):
        return None
    if isinstance(result.get("changed"), bool):
        return bool(result["changed"])
    effects = [result[key] for key in EFFECT_KEYS if key in result]
    if effects:
        return any(v.strip() if isinstance(v, str) else v for v in effects)
    for key in ("value", "now"):
        if key in result and "previous" in result:
            return bool(result[key] != result["previous"])
    return None
