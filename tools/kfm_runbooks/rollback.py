"""Undo an applied action, from its ledger entry, with the same evidence trail.

`kfm-runbook rollback INC ACT-xxxx` finds the action in the ledger, refuses when it was
never applied, has no registered undo, or was already rolled back, and otherwise runs
the registered undo operation (checks.UNDO_OPS) against the action's own target - only
with --apply, like every state change - recording it in commands.md, the ledger and the
timeline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import ledger
from ._time import now_iso
from .checks import undo_op
from .errors import InputError
from .layout import default_actor
from .target import load_target
from .workspace import open_workspace


@dataclass
class RollbackResult:
    action_id: str
    applied: bool
    title: str
    op: str
    result: Any = None
    ledger_head: str | None = None


def rollback_action(
    incident_id: str,
    action_id: str,
    *,
    apply: bool = False,
    root: str | Path | None = None,
    actor: str | None = None,
) -> RollbackResult:
    workspace = open_workspace(incident_id, root)
    actor = actor or default_actor()
    chain = ledger.check(workspace.ledger)
    actions = [
        e
        for e in chain.entries
        if e.get("kind") == "action" and e.get("data", {}).get("action_id") == action_id
    ]
    if not actions:
        raise InputError(
            f"no applied action {action_id!r} in {incident_id}'s ledger: see 20_actions/commands.md"
        )
    data = actions[-1]["data"]
    undo = data.get("undo")
    if not undo or not isinstance(undo, dict):
        raise InputError(
            f"{action_id} has no automatic undo: follow its entry in 20_actions/rollback.md by hand"
        )
    done = [
        e
        for e in chain.entries
        if e.get("kind") == "rollback"
        and e.get("data", {}).get("action_id") == action_id
        and e.get("data", {}).get("ok")
    ]
    if done:
        raise InputError(f"{action_id} was already rolled back (ledger entry {done[-1]['seq']})")
    try:
        function = undo_op(str(undo.get("op")))
    except KeyError as exc:
        raise InputError(f"{action_id}: unknown undo operation {undo.get('op')!r}") from exc
    if not apply:
        return RollbackResult(action_id, False, data.get("title", ""), str(undo["op"]))
    target = load_target(data["target"])
    result = function(target, **(undo.get("args") or {}))
    entry_data = {
        "action_id": action_id,
        "title": data.get("title"),
        "op": undo["op"],
        "args": undo.get("args"),
        "result": result,
        "ok": True,
    }
    with workspace.locked():
        workspace.append_record(
            workspace.actions / "commands.md",
            f"\n## ROLLBACK of {action_id} — {data.get('title')}\n"
            f"- time (UTC): {now_iso()}\n- actor: {actor}\n"
            f"- command: `kfm-runbook rollback {incident_id} {action_id} --apply`\n"
            f"- result: `{json.dumps(result, sort_keys=True, default=str)}`\n",
        )
        entry = workspace.record("rollback", entry_data, actor)
        workspace.append_timeline(f"rollback of {action_id} ({data.get('title')}) by {actor}")
    return RollbackResult(
        action_id, True, data.get("title", ""), str(undo["op"]), result, str(entry["hash"])
    )
