"""The incident's life: status, severity, roles, integrity flags, root cause.

Every change is validated, then written at once to incident.yaml (atomic replace), the
ledger (with the new incident.yaml sha256, so `verify` can prove the file is the one last
recorded) and the timeline, under the workspace lock.

Status flow (seed): Investigating → Identified → Mitigating → Monitoring → Resolved.
Moving forward may skip intermediate states, except that Resolved is reached only through
`incident resolve` (the Definition-of-Resolved gate, resolve.py) and only from Monitoring.
Moving back (a regression) needs a note; a Resolved incident can be re-opened. Milestone
timestamps are set on first entry and never go backwards.

Integrity flags (seed: "if provenance or integrity is uncertain, escalate severity until
verified"): a failed `verify` or a runbook run that ends HOLD raises a flag; while any flag
is open, severity cannot be lowered. A passing `verify` clears the verify flag; a passing
run of the same runbook clears its flag. Flags live in the ledger only (never in
incident.yaml), so raising one never rewrites a file that may itself be under suspicion.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import redact
from ._fs import replace_atomic, sha256_bytes
from ._time import iso, utc_now
from .errors import InputError
from .history import History
from .incident import ROLES, SEVERITIES, STATUSES, Incident
from .layout import TIMELINE, Workspace, default_actor, timeline_line
from .recovery import open_for_update
from .vocab import LedgerKind

MILESTONES = {
    "Identified": "identified",
    "Mitigating": "mitigated",
    "Monitoring": "monitoring",
    "Resolved": "resolved",
}
CADENCE = {
    "Sev0": dt.timedelta(minutes=15),
    "Sev1": dt.timedelta(minutes=30),
    "Sev2": dt.timedelta(hours=1),
    "Sev3": dt.timedelta(days=1),
}


def write_locked(
    workspace: Workspace,
    record: Incident,
    kind: str,
    data: dict[str, Any],
    actor: str,
    timeline: str,
) -> dict[str, Any]:
    """Persist a new incident record + ledger entry + timeline line. Caller holds the lock.

    The entry carries the whole record and the sha256 of the file written from it: the
    ledger is the record, incident.yaml its view (`Workspace.load`).

    The record is scrubbed of secrets first (a password typed into a note stays out of
    incident.yaml, as the ledger and timeline doors keep it out of theirs)."""
    record = record.model_validate(redact.clean(record.model_dump()))
    text = record.to_yaml().encode()
    entry = workspace.record(
        kind,
        {
            **data,
            "record": record.model_dump(mode="json"),
            "incident_yaml_sha256": sha256_bytes(text),
        },
        actor,
        {TIMELINE: timeline_line(timeline)},
    )
    replace_atomic(workspace.incident_yaml, text)  # a kill before this: Workspace.complete
    return entry


def _mutate(
    incident_id: str,
    root: str | Path | None,
    actor: str | None,
    change: Callable[[Incident, Workspace], tuple[Incident, str, dict[str, Any], str]],
) -> tuple[Incident, dict[str, Any]]:
    actor = actor or default_actor()
    workspace = open_for_update(incident_id, root, actor)
    with workspace.locked():
        record, kind, data, line = change(workspace.load(), workspace)
        entry = write_locked(workspace, record, kind, data, actor, f"{line} (by {actor})")
    return record, entry


def _one_line(value: str, what: str) -> str:
    flat = " ".join(value.split())
    if not flat:
        raise InputError(f"{what} must not be empty")
    return flat


def set_status(
    incident_id: str,
    status: str,
    *,
    note: str,
    root: str | Path | None = None,
    actor: str | None = None,
) -> tuple[Incident, dict[str, Any]]:
    if status not in STATUSES:
        raise InputError(f"unknown status {status!r}: one of {', '.join(STATUSES)}")
    note = _one_line(note, "--note")

    def change(record: Incident, ws: Workspace) -> tuple[Incident, str, dict[str, Any], str]:
        current = record.status
        if status == current:
            raise InputError(f"{record.id} is already {current}")
        if status == "Resolved":
            raise InputError(
                "Resolved is reached only through `kfm-runbook incident resolve "
                f"{record.id}`, which checks the Definition of Resolved"
            )
        now = utc_now()
        stamps = record.timestamps.model_dump()
        field = MILESTONES.get(status)
        if field and stamps.get(field) is None:
            latest = max(v for v in stamps.values() if v is not None)
            if now < latest:
                raise InputError(
                    f"clock is behind the last milestone ({iso(latest)}): fix the clock"
                )
            stamps[field] = now
        backwards = STATUSES.index(status) < STATUSES.index(current)
        updated = record.model_copy(
            update={"status": status, "timestamps": record.timestamps.model_validate(stamps)}
        )
        verb = "re-opened" if current == "Resolved" else ("back to" if backwards else "now")
        line = f"status {current} → {status} ({verb}): {note}"
        return updated, "status", {"from": current, "to": status, "note": note}, line

    return _mutate(incident_id, root, actor, change)


def set_severity(
    incident_id: str,
    severity: str,
    *,
    reason: str,
    root: str | Path | None = None,
    actor: str | None = None,
) -> tuple[Incident, dict[str, Any]]:
    if severity not in SEVERITIES:
        raise InputError(f"unknown severity {severity!r}: one of {', '.join(SEVERITIES)}")
    reason = _one_line(reason, "--reason")

    def change(record: Incident, ws: Workspace) -> tuple[Incident, str, dict[str, Any], str]:
        current = record.severity
        if severity == current:
            raise InputError(f"{record.id} is already {current}")
        lowering = SEVERITIES.index(severity) > SEVERITIES.index(current)
        flags = History.read(ws).open_flags
        if lowering and flags:
            reasons = "; ".join(f"{source}: {reason}" for source, reason in flags.items())
            raise InputError(
                f"cannot lower severity while integrity is unproven ({reasons}): prove it "
                "first (`kfm-runbook verify`, re-run the runbook until it passes)"
            )
        updated = record.model_copy(update={"severity": severity})
        line = f"severity {current} → {severity}: {reason}"
        return updated, "severity", {"from": current, "to": severity, "reason": reason}, line

    return _mutate(incident_id, root, actor, change)


def assign_role(
    incident_id: str,
    role: str,
    name: str,
    *,
    root: str | Path | None = None,
    actor: str | None = None,
) -> tuple[Incident, dict[str, Any]]:
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    name = _one_line(name, "NAME")

    def change(record: Incident, ws: Workspace) -> tuple[Incident, str, dict[str, Any], str]:
        previous = getattr(record.roles, role)
        if previous == name:
            raise InputError(f"{name} already holds {role} on {record.id}")
        roles = record.roles.model_copy(update={role: name})
        updated = record.model_copy(update={"roles": roles})
        line = f"{role} handoff {previous} → {name}" if previous else f"{role} assigned to {name}"
        return updated, "assign", {"role": role, "from": previous, "to": name}, line

    return _mutate(incident_id, root, actor, change)


def set_notes(
    incident_id: str,
    *,
    impact: str | None = None,
    hypothesis: str | None = None,
    root_cause: str | None = None,
    root: str | Path | None = None,
    actor: str | None = None,
) -> tuple[Incident, dict[str, Any]]:
    """Record impact, current hypothesis and/or root cause (one line each)."""
    values = {
        k: _one_line(v, k.replace("_", "-"))
        for k, v in (("impact", impact), ("hypothesis", hypothesis), ("root_cause", root_cause))
        if v is not None
    }
    if not values:
        raise InputError("nothing to record: pass --impact, --hypothesis and/or --root-cause")

    def change(record: Incident, ws: Workspace) -> tuple[Incident, str, dict[str, Any], str]:
        updated = record.model_copy(update=values)
        line = "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in values.items())
        return updated, "notes", values, line

    return _mutate(incident_id, root, actor, change)


def flag_locked(
    workspace: Workspace, source: str, reason: str | None, actor: str
) -> dict[str, Any] | None:
    """Raise (reason given) or clear (reason None) the integrity flag of `source`.

    Ledger + timeline only; returns the new entry, or None when nothing changed. Lock held.
    """
    current = History.read(workspace).open_flags.get(source)
    if reason is None:
        if current is None:
            return None
        line = f"integrity proven again: {source} (by {actor})"
        return workspace.record(
            LedgerKind.INTEGRITY_CLEARED, {"source": source}, actor, {TIMELINE: timeline_line(line)}
        )
    if current == reason:
        return None
    line = f"⚠ integrity unproven ({source}): {reason} — severity cannot be lowered until proven"
    return workspace.record(
        LedgerKind.INTEGRITY_FLAGGED,
        {"source": source, "reason": reason},
        actor,
        {TIMELINE: timeline_line(line)},
    )


def next_update_due(record: Incident, last_update: dt.datetime | None) -> dt.datetime:
    """When the next comms update is due: last update (or declaration) + severity cadence."""
    return (last_update or record.timestamps.declared) + CADENCE[record.severity]
