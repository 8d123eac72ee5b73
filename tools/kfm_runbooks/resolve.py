"""`kfm-runbook incident resolve`: the seed's Definition of Resolved, proven from evidence.

An incident is Resolved only when, each proven from the workspace:
- root cause is understood: recorded (`incident note --root-cause`);
- service is stable, measured: a library runbook passed after the last applied
  containment / recovery change (or rollback), and every runbook that found a FAIL or
  HOLD in this incident passed again after that finding and after the last change - or
  was waived, with a reason, by `incident waive`. Ad-hoc notebooks given by path never
  speak for a library runbook (the run records whether its bytes are the library's);
- integrity checks pass: `verify` passes and no integrity flag is open;
- a rollback plan exists for every applied change (in its ledger entry and rollback.md);
- the postmortem exists when required (Sev0/Sev1, a rollback, integrity flagged), with
  its sections filled in by people and at least one owned action item;
- every PR-first fix is merged (and its runbook passed in a run started after the merge)
  or abandoned with a reason (fixes.py);
- the incident is in Monitoring (no skipping the status flow).
Otherwise nothing changes and every missing part is listed. Resolving records the ledger
head it closed on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import fixes
from . import runbook as runbook_mod
from ._time import utc_now
from .errors import InputError, IntegrityError, RunbookError
from .history import History
from .layout import ROLLBACK, TIMELINE, Workspace, default_actor, timeline_line
from .lifecycle import write_locked
from .postmortem import postmortem_gaps, required_reasons
from .recovery import open_for_update
from .verify import verify_locked
from .vocab import LedgerKind

WAIVED = LedgerKind.GATE_WAIVED


@dataclass
class ResolveResult:
    resolved: bool
    missing: list[str] = field(default_factory=list)
    ledger_head: str | None = None


def check(incident_id: str, root: str | Path | None = None) -> list[str]:
    """What is missing for the Definition of Resolved ([] when it holds)."""
    workspace = open_for_update(incident_id, root, default_actor())
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
    missing += _verification(record.id, history)
    missing += [m.replace(" INC ", f" {record.id} ") for m in fixes.gate(history)]
    report = verify_locked(workspace, None)
    if not report.ok:
        missing.append(f"verify fails: {report.problems[0]}")
    flags = history.open_flags
    if flags:
        missing.append("integrity unproven: " + "; ".join(f"{k}: {v}" for k, v in flags.items()))
    for entry in history.applied_actions:
        data = entry["data"]
        has_plan = bool(data.get("rollback") or data.get("undo"))
        written = (entry.get("views") or {}).get(ROLLBACK)  # rollback.md as the ledger holds it
        if written is None:  # a workspace from before view recording
            written = (workspace.actions / "rollback.md").read_text(encoding="utf-8")
        if not has_plan or str(data.get("action_id")) not in written:
            missing.append(
                f"no rollback plan for applied action {data.get('action_id')} ({data.get('title')})"
            )
    reasons = required_reasons(workspace, history)
    if reasons:
        unfilled = postmortem_gaps(workspace)
        if unfilled:
            missing.append(f"postmortem required ({'; '.join(reasons)}): {unfilled}")
    return missing


def _runbook(entry: dict[str, Any]) -> dict[str, Any]:
    value = entry["data"].get("runbook")
    return value if isinstance(value, dict) else {}


def _library_ids(history: History) -> set[str]:
    """Runbook ids that name a library runbook (recorded so by a run, or in the library)."""
    ids = {str(_runbook(e).get("id")) for e in history.runs}
    found = set()
    for runbook_id in ids:
        if any(
            _runbook(e).get("library") for e in history.runs if _runbook(e).get("id") == runbook_id
        ):
            found.add(runbook_id)
            continue
        try:
            runbook_mod.find(runbook_id)
        except RunbookError:
            continue
        found.add(runbook_id)
    return found


def _verification(incident_id: str, history: History) -> list[str]:
    """Stable, measured: proven by library runbooks after the last change and after every
    FAIL / HOLD any runbook found (unless waived)."""
    last_change = history.last_change_seq
    after = f" after the last change (ledger #{last_change})" if last_change is not None else ""
    library = _library_ids(history)

    def counts(entry: dict[str, Any]) -> bool:
        """A run speaks for its runbook id: a library id only by the library's bytes."""
        book = _runbook(entry)
        return str(book.get("id")) not in library or bool(book.get("library"))

    def later(entry: dict[str, Any], seq: int | None) -> bool:
        return seq is None or int(entry["seq"]) > seq

    missing = []
    passes = [
        e for e in history.runs if e["data"].get("outcome") == "passed" and later(e, last_change)
    ]
    if not any(counts(e) and bool(_runbook(e).get("library")) for e in passes):
        adhoc = " (ad-hoc notebooks given by path do not count)" if passes else ""
        missing.append(
            f"no verification runbook passed{after}: re-run the runbook to prove it{adhoc}"
        )
    waived = {str(e["data"].get("runbook")): int(e["seq"]) for e in history.of(WAIVED)}
    findings: dict[str, dict[str, Any]] = {}
    for entry in history.runs:
        if entry["data"].get("outcome") in ("failed", "hold"):
            findings[str(_runbook(entry).get("id"))] = entry
    for runbook_id, found in findings.items():
        if waived.get(runbook_id, -1) > int(found["seq"]):
            continue
        bar = max(int(found["seq"]), last_change if last_change is not None else -1)
        proven = [
            e
            for e in passes
            if _runbook(e).get("id") == runbook_id and counts(e) and int(e["seq"]) > bar
        ]
        if not proven:
            data = found["data"]
            missing.append(
                f"{runbook_id} found {data.get('outcome').upper()} (run {data.get('run_id')}, "
                f"ledger #{found['seq']}) and has not passed since{after or ''}: re-run it "
                f"until it passes, or `kfm-runbook incident waive {incident_id} {runbook_id} "
                "--reason ...`"
            )
    return missing


def waive(
    incident_id: str,
    runbook_id: str,
    *,
    reason: str,
    root: str | Path | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """Accept, with a recorded reason, that RUNBOOK's FAIL / HOLD need not pass again
    before resolving (a later FAIL / HOLD of it needs a new pass or waiver)."""
    flat = " ".join(reason.split())
    if not flat:
        raise InputError("--reason must not be empty: say why the finding may stand")
    actor = actor or default_actor()
    workspace = open_for_update(incident_id, root, actor)
    with workspace.locked():
        history = History.read(workspace)
        found = [
            e
            for e in history.runs
            if _runbook(e).get("id") == runbook_id
            and e["data"].get("outcome") in ("failed", "hold")
        ]
        if not found:
            raise InputError(
                f"{runbook_id} found no FAIL or HOLD in {incident_id}: nothing to waive "
                "(see `kfm-runbook incident show`)"
            )
        line = f"⚠ {runbook_id}'s {found[-1]['data'].get('outcome')} waived by {actor}: {flat}"
        return workspace.record(
            WAIVED,
            {"runbook": runbook_id, "reason": flat, "run_id": found[-1]["data"].get("run_id")},
            actor,
            {TIMELINE: timeline_line(line)},
        )


def resolve(
    incident_id: str, root: str | Path | None = None, actor: str | None = None, note: str = ""
) -> ResolveResult:
    actor = actor or default_actor()
    workspace = open_for_update(incident_id, root, actor)
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
