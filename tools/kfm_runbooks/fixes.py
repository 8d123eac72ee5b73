"""`kfm-runbook incident fixes`: where each PR-first change of an incident stands.

Every applied PR-first action (record.pr_action) names its repository, branch, base and
commit in the ledger. This module asks the repository, now, what became of each:

    pending    the branch exists and is not merged into the main branch it was cut from
    merged     the commit (or the same patch: a squash merge) is on the main branch;
               `merged_at` is when it got there
    abandoned  recorded with a reason (`--abandon ACT --reason …`, which also deletes the
               local branch); a merged fix is rolled back instead, never abandoned
    branch deleted   gone without a recorded reason: the gate asks for one

The resolve gate (resolve.py) requires every fix merged or abandoned with a reason, and
for each merged fix a passing run of its runbook that started after the merge.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import prfirst
from ._time import parse_iso
from .errors import InputError
from .history import History
from .layout import TIMELINE, Workspace, default_actor, timeline_line
from .recovery import open_for_update
from .vocab import LedgerKind


@dataclass(frozen=True)
class FixRow:
    action_id: str
    runbook: str
    title: str
    branch: str
    commit: str
    main: str
    state: str
    merged_at: str
    detail: str
    reason: str = ""
    reverts: str = ""  # the action whose fix this one reverts (a PR-first rollback)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _recorded(history: History) -> list[tuple[dict[str, Any], dict[str, Any], str]]:
    """(fix, ledger data, reverted action id) for every PR-first change made."""
    found = []
    for entry in history.of(LedgerKind.ACTION):
        fix = entry["data"].get("pr_first")
        if isinstance(fix, dict) and fix.get("commit"):
            found.append((fix, entry["data"], ""))
    for entry in history.of(LedgerKind.ROLLBACK):
        fix = entry["data"].get("pr_first")
        if isinstance(fix, dict) and fix.get("commit"):
            found.append((fix, entry["data"], str(entry["data"].get("action_id"))))
    return found


def rows(history: History) -> list[FixRow]:
    abandoned = {
        str(e["data"].get("action_id")): str(e["data"].get("reason"))
        for e in history.of(LedgerKind.FIX_ABANDONED)
    }
    out = []
    for fix, data, reverts in _recorded(history):
        action_id = f"{data.get('action_id')}" + ("/revert" if reverts else "")
        now = prfirst.state(fix)
        state = now.state
        reason = abandoned.get(action_id, "")
        if reason and state != prfirst.MERGED:
            state = prfirst.ABANDONED
        out.append(
            FixRow(
                action_id=action_id,
                runbook=str(data.get("runbook", "")),
                title=str(data.get("title", "")),
                branch=str(fix.get("branch")),
                commit=str(fix.get("commit")),
                main=str(fix.get("main")),
                state=state,
                merged_at=now.merged_at,
                detail=now.detail,
                reason=reason,
                reverts=reverts,
            )
        )
    return out


def list_fixes(incident_id: str, root: str | Path | None = None) -> list[FixRow]:
    workspace = open_for_update(incident_id, root, default_actor())
    with workspace.locked():
        return rows(History.read(workspace))


def gate(history: History) -> list[str]:
    """What the resolve gate misses about PR-first changes ([] when they are settled)."""
    missing = []
    for row in rows(history):
        if row.state == prfirst.PENDING:
            missing.append(
                f"PR-first fix {row.action_id} ({row.branch}) is not merged ({row.detail}): "
                "merge its PR, or abandon it with a reason (`kfm-runbook incident fixes "
                f"INC --abandon {row.action_id} --reason …`)"
            )
        elif row.state == prfirst.GONE:
            missing.append(
                f"PR-first fix {row.action_id}: {row.detail}: record why "
                f"(`kfm-runbook incident fixes INC --abandon {row.action_id} --reason …`)"
            )
        elif row.state == prfirst.MERGED and not _verified_after(history, row):
            missing.append(
                f"PR-first fix {row.action_id} was merged at {row.merged_at}: no run of "
                f"{row.runbook} that started after the merge has passed: re-run it"
            )
    return missing


def _verified_after(history: History, row: FixRow) -> bool:
    merged = parse_iso(row.merged_at)
    for entry in history.runs:
        data = entry["data"]
        if (data.get("runbook") or {}).get("id") != row.runbook:
            continue
        if data.get("outcome") != "passed":
            continue
        started = history.started_entry(str(data.get("run_id")))
        when = parse_iso(str((started or entry)["time"]))
        if when >= merged:
            return True
    return False


def abandon(
    incident_id: str,
    action_id: str,
    *,
    reason: str,
    root: str | Path | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """Record that a PR-first fix will not be merged, and why; deletes its local branch."""
    flat = " ".join(reason.split())
    if not flat:
        raise InputError("--reason must not be empty: say why the fix is not merged")
    actor = actor or default_actor()
    workspace = open_for_update(incident_id, root, actor)
    with workspace.locked():
        return _abandon_locked(workspace, action_id, flat, actor)


def _abandon_locked(
    workspace: Workspace, action_id: str, reason: str, actor: str
) -> dict[str, Any]:
    history = History.read(workspace)
    found = [r for r in rows(history) if r.action_id == action_id]
    if not found:
        known = ", ".join(r.action_id for r in rows(history)) or "none"
        raise InputError(
            f"{action_id} is not a PR-first fix of {workspace.incident_id} (fixes: {known})"
        )
    row = found[0]
    if row.state == prfirst.MERGED:
        raise InputError(
            f"{action_id} is merged: undo it with `kfm-runbook rollback "
            f"{workspace.incident_id} {action_id.split('/')[0]} --apply` (a revert PR)"
        )
    if row.state == prfirst.ABANDONED:
        raise InputError(f"{action_id} is already abandoned ({row.reason})")
    fix = next(f for f, d, r in _recorded(history) if f.get("commit") == row.commit)
    with contextlib.suppress(prfirst.FixError):
        prfirst.git(Path(str(fix["repo"])), "branch", "-D", row.branch)
    line = f"PR-first fix {action_id} ({row.branch}) abandoned by {actor}: {reason}"
    return workspace.record(
        LedgerKind.FIX_ABANDONED,
        {"action_id": action_id, "branch": row.branch, "commit": row.commit, "reason": reason},
        actor,
        {TIMELINE: timeline_line(line)},
    )
