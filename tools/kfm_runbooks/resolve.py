"""`kfm-runbook incident resolve`: the seed's Definition of Resolved, proven from evidence.

An incident is Resolved only when, each proven from the workspace:
- root cause is understood: recorded (`incident note --root-cause`);
- service is stable, measured: a verification runbook passed after the last applied
  containment / recovery change (or rollback);
- integrity checks pass: `verify` passes and no integrity flag is open;
- a rollback plan exists for every applied change (in its ledger entry and rollback.md);
- the postmortem exists when required (Sev0/Sev1, a rollback, integrity flagged);
- the incident is in Monitoring (no skipping the status flow).
Otherwise nothing changes and every missing part is listed. Resolving records the ledger
head it closed on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ._time import utc_now
from .errors import IntegrityError
from .history import History
from .layout import Workspace, default_actor
from .lifecycle import write_locked
from .postmortem import required_reasons
from .verify import verify_locked
from .workspace import open_workspace


@dataclass
class ResolveResult:
    resolved: bool
    missing: list[str] = field(default_factory=list)
    ledger_head: str | None = None


def check(incident_id: str, root: str | Path | None = None) -> list[str]:
    """What is missing for the Definition of Resolved ([] when it holds)."""
    workspace = open_workspace(incident_id, root)
    with workspace.locked():
        return _missing(workspace)


def _missing(workspace: Workspace) -> list[str]:
    record = workspace.load()
    history = History.read(workspace)
    missing: list[str] = []
    if record.status == "Resolved":
        missing.append(f"{record.id} is already Resolved")
        return missing
    if record.status != "Monitoring":
        missing.append(
            f"status is {record.status}: move to Monitoring first "
            f"(`kfm-runbook incident status {record.id} Monitoring --note ...`)"
        )
    if not record.root_cause.strip():
        missing.append(
            f"no root cause recorded: `kfm-runbook incident note {record.id} --root-cause ...`"
        )
    last_change = history.last_change_seq
    passed_after = [
        e
        for e in history.runs
        if e["data"].get("outcome") == "passed" and (last_change is None or e["seq"] > last_change)
    ]
    if not passed_after:
        after = f" after the last change (ledger #{last_change})" if last_change is not None else ""
        missing.append(f"no verification runbook passed{after}: re-run the runbook to prove it")
    report = verify_locked(workspace, None)
    if not report.ok:
        missing.append(f"verify fails: {report.problems[0]}")
    flags = history.open_flags
    if flags:
        missing.append("integrity unproven: " + "; ".join(f"{k}: {v}" for k, v in flags.items()))
    rollback_md = (workspace.actions / "rollback.md").read_text(encoding="utf-8")
    for entry in history.applied_actions:
        data = entry["data"]
        has_plan = bool(data.get("rollback") or data.get("undo"))
        if not has_plan or str(data.get("action_id")) not in rollback_md:
            missing.append(
                f"no rollback plan for applied action {data.get('action_id')} ({data.get('title')})"
            )
    reasons = required_reasons(workspace, history)
    if reasons and not (workspace.postmortem / "postmortem.md").is_file():
        missing.append(
            f"postmortem required ({'; '.join(reasons)}): `kfm-runbook postmortem {record.id}`"
        )
    return missing


def resolve(
    incident_id: str, root: str | Path | None = None, actor: str | None = None, note: str = ""
) -> ResolveResult:
    workspace = open_workspace(incident_id, root)
    actor = actor or default_actor()
    with workspace.locked():
        missing = _missing(workspace)
        if missing:
            raise IntegrityError(
                f"{incident_id} cannot be resolved: {len(missing)} part(s) of the Definition "
                "of Resolved are not proven",
                missing,
            )
        record = workspace.load()
        history = History.read(workspace)
        stamps = record.timestamps.model_copy(update={"resolved": utc_now()})
        updated = record.model_copy(update={"status": "Resolved", "timestamps": stamps})
        entry = write_locked(
            workspace,
            updated,
            "incident.resolved",
            {"closed_on_head": history.head, "note": note, "from": record.status},
            actor,
            f"incident RESOLVED by {actor} (Definition of Resolved proven)",
        )
    return ResolveResult(True, [], str(entry["hash"]))
