"""Undo an applied action, from its ledger entry, with the same evidence trail.

`kfm-runbook rollback INC ACT-xxxx` finds the action in the ledger, refuses when it was
never applied, has no registered undo, or was already rolled back, and otherwise runs
the undo operation its name maps to (checks/undo.py's UNDO_OPS) against the action's own
target - only with --apply, like every state change - recording it in commands.md, the
ledger and the timeline. The check ("not rolled back yet") and the undo run under the
workspace lock, so two rollbacks of one action at once undo it once. An undo that
changed nothing (its result says so: `restored: false`, `changed: false`, ...) or raised
is recorded as a failed rollback and reported as one (exit 1): "undid" is never printed
for a no-op.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import prfirst
from ._fs import sha256_bytes
from ._time import now_iso
from .checks.undo import UnknownUndoOpError, undo_effect, undo_op
from .errors import ActionFailedError, InputError
from .evidence import publish_locked
from .history import History
from .layout import COMMANDS, TIMELINE, Workspace, default_actor, timeline_line
from .recovery import open_for_update
from .target import load_target
from .vocab import LedgerKind

REVERT_OP = "prfirst.revert"  # how a PR-first fix is undone (not an UNDO_OPS name)


@dataclass
class RollbackResult:
    action_id: str
    applied: bool
    title: str
    op: str
    result: Any = None
    ledger_head: str | None = None


def _action(history: History, incident_id: str, action_id: str) -> dict[str, Any]:
    actions = [e for e in history.of("action") if e["data"].get("action_id") == action_id]
    if not actions:
        raise InputError(
            f"no applied action {action_id!r} in {incident_id}'s ledger: see 20_actions/commands.md"
        )
    data: dict[str, Any] = actions[-1]["data"]
    undo = data.get("undo")
    fix = data.get("pr_first")
    if isinstance(fix, dict) and fix.get("commit"):
        undo = {"op": REVERT_OP}
    if not undo or not isinstance(undo, dict):
        raise InputError(
            f"{action_id} has no automatic undo: follow its entry in 20_actions/rollback.md by hand"
        )
    done = [e for e in history.rollbacks if e["data"].get("action_id") == action_id]
    if done:
        raise InputError(f"{action_id} was already rolled back (ledger entry {done[-1]['seq']})")
    return data


def rollback_action(
    incident_id: str,
    action_id: str,
    *,
    apply: bool = False,
    root: str | Path | None = None,
    actor: str | None = None,
) -> RollbackResult:
    actor = actor or default_actor()
    workspace = open_for_update(incident_id, root, actor)
    with workspace.locked():
        data = _action(History.read(workspace), incident_id, action_id)
        if isinstance(data.get("pr_first"), dict) and data["pr_first"].get("commit"):
            return _revert_fix(workspace, incident_id, action_id, data, apply, actor)
        undo = data["undo"]
        try:
            function = undo_op(undo.get("op"))
        except UnknownUndoOpError as exc:
            raise UnknownUndoOpError(undo.get("op"), action_id) from exc
        if not apply:
            return RollbackResult(action_id, False, data.get("title", ""), str(undo["op"]))
        target = load_target(data["target"])
        result: Any = None
        error: str | None = None
        try:
            result = json.loads(
                json.dumps(function(target, **(undo.get("args") or {})), default=str)
            )
        except Exception as exc:  # recorded as a failed rollback, then reported
            error = "".join(traceback.format_exception_only(exc)).strip()
        if error is None and undo_effect(result) is False:
            error = f"the undo changed nothing: {json.dumps(result, sort_keys=True)}"
        entry = _record(workspace, incident_id, action_id, data, undo, result, error, actor)
    if error is not None:
        raise ActionFailedError(
            f"rollback of {action_id} ({data.get('title')}) FAILED: {error}; recorded in the "
            f"ledger (#{entry['seq']}); see 20_actions/rollback.md to undo it by hand"
        )
    return RollbackResult(
        action_id, True, data.get("title", ""), str(undo["op"]), result, str(entry["hash"])
    )


def _revert_fix(
    workspace: Workspace,
    incident_id: str,
    action_id: str,
    data: dict[str, Any],
    apply: bool,
    actor: str,
) -> RollbackResult:
    """Undo a PR-first fix the PR-first way: a revert commit on a new branch (never a
    force-push); refused while the fix is not merged (abandon it instead)."""
    fix = data["pr_first"]
    now = prfirst.state(fix)
    if now.state != prfirst.MERGED:
        raise InputError(
            f"{action_id}'s fix is {now.state} ({now.detail}): there is nothing on "
            f"{fix.get('main')} to revert; drop it with `kfm-runbook incident fixes "
            f"{incident_id} --abandon {action_id} --reason …`"
        )
    title = str(data.get("title", ""))
    if not apply:
        return RollbackResult(action_id, False, title, REVERT_OP)
    made, patch = prfirst.revert(fix, incident_id=incident_id, action_id=action_id, actor=actor)
    rel = f"20_actions/diffs/{action_id}-revert.patch"
    record = {**made.as_dict(), "patch": rel, "patch_sha256": sha256_bytes(patch)}
    commands = (
        f"\n## ROLLBACK of {action_id} — {title} (PR-first revert)\n"
        f"- time (UTC): {now_iso()}\n- actor: {actor}\n"
        f"- command: `kfm-runbook rollback {incident_id} {action_id} --apply`\n"
        f"- revert branch `{made.branch}` commit `{made.commit}` (merge into `{made.main}`)\n"
        f"- patch: {rel} (sha256 {record['patch_sha256']})\n"
    )
    line = f"rollback of {action_id} ({title}) by {actor}: revert PR branch {made.branch}"
    entry = publish_locked(
        workspace,
        [(rel, patch)],
        LedgerKind.ROLLBACK,
        {
            "action_id": action_id,
            "title": title,
            "op": REVERT_OP,
            "args": None,
            "result": {"branch": made.branch, "commit": made.commit},
            "ok": True,
            "error": None,
            "pr_first": record,
        },
        actor,
        {COMMANDS: commands, TIMELINE: timeline_line(line)},
    )
    return RollbackResult(action_id, True, title, REVERT_OP, record, str(entry["hash"]))


def _record(
    workspace: Workspace,
    incident_id: str,
    action_id: str,
    data: dict[str, Any],
    undo: dict[str, Any],
    result: Any,
    error: str | None,
    actor: str,
) -> dict[str, Any]:
    status = "ok" if error is None else f"FAILED: {error}"
    commands = (
        f"\n## ROLLBACK of {action_id} — {data.get('title')}\n"
        f"- time (UTC): {now_iso()}\n- actor: {actor}\n"
        f"- command: `kfm-runbook rollback {incident_id} {action_id} --apply`\n"
        f"- result: {status} `{json.dumps(result, sort_keys=True, default=str)}`\n"
    )
    verb = "rollback" if error is None else "FAILED rollback"
    line = f"{verb} of {action_id} ({data.get('title')}) by {actor}"
    return workspace.record(
        LedgerKind.ROLLBACK,
        {
            "action_id": action_id,
            "title": data.get("title"),
            "op": undo["op"],
            "args": undo.get("args"),
            "result": result,
            "ok": error is None,
            "error": error,
        },
        actor,
        {COMMANDS: commands, TIMELINE: timeline_line(line)},
    )
